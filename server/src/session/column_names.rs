//! PostgreSQL's names for result columns that are expressions without an alias. SQLite names
//! such a column after its text (`count(*)`, `CAST($1 AS INTEGER) + 1`); PostgreSQL after
//! the function it calls (`count`), the type it casts to (`int4`), `case`, or `?column?`
//! (its FigureColname). Clients that read a row by name (`row['count']`) and psql's headers
//! see PostgreSQL's. Read from the statement's own words, before Cairn rewrites them.

use crate::sql::lexer::{Spanned, Token};

/// Words that end a select list at the top level.
const LIST_ENDS: &[&str] = &[
    "from",
    "where",
    "group",
    "having",
    "window",
    "order",
    "limit",
    "offset",
    "union",
    "intersect",
    "except",
    "into",
    "returning",
];

/// Words after which an identifier is an operand, not an alias.
const OPERATOR_WORDS: &[&str] = &[
    "not", "and", "or", "is", "in", "like", "glob", "between", "when", "then", "else", "case",
    "distinct", "as", "escape", "collate", "select", "all", "over", "double",
];

/// Words that end an expression rather than name it.
const NOT_ALIASES: &[&str] = &[
    "end",
    "null",
    "true",
    "false",
    "current_date",
    "current_time",
    "current_timestamp",
    "current_user",
    "session_user",
    "current_role",
    "current_schema",
    "current_catalog",
];

/// The names of a SELECT's columns, one per item of its (first) select list; `None` when
/// the statement is not a SELECT or has a `*`.
pub(super) fn of_select(tokens: &[Spanned<'_>]) -> Option<Vec<Option<String>>> {
    items(tokens)?
        .into_iter()
        .map(|range| name_of(&tokens[range]))
        .collect()
}

/// The token ranges of a SELECT's (first) select list items.
pub(super) fn items(tokens: &[Spanned<'_>]) -> Option<Vec<std::ops::Range<usize>>> {
    Some(items_of(tokens, first_select(tokens)?))
}

/// The token ranges of the items of the select list after the SELECT at `select`.
pub(super) fn items_of(tokens: &[Spanned<'_>], select: usize) -> Vec<std::ops::Range<usize>> {
    let mut start = select + 1;
    while tokens
        .get(start)
        .is_some_and(|t| t.token.is_keyword("distinct") || t.token.is_keyword("all"))
    {
        start += 1;
    }
    let mut items = Vec::new();
    let mut depth = 0i32;
    let mut from = start;
    let mut end = tokens.len();
    for (i, t) in tokens.iter().enumerate().skip(start) {
        match &t.token {
            Token::Punct("(") => depth += 1,
            // ARRAY[a, b]: its commas are its own.
            Token::Punct("[") => depth += 1,
            Token::Punct("]") => depth -= 1,
            // The end of a subquery the list is in.
            Token::Punct(")") if depth == 0 => {
                end = i;
                break;
            }
            Token::Punct(")") => depth -= 1,
            Token::Punct(",") if depth == 0 => {
                items.push(from..i);
                from = i + 1;
            }
            Token::Punct(";") if depth == 0 => {
                end = i;
                break;
            }
            // (`a IS [NOT] DISTINCT FROM b` is an operator, not the list's end.)
            Token::Word(_)
                if depth == 0
                    && LIST_ENDS.iter().any(|k| t.token.is_keyword(k))
                    && !(t.token.is_keyword("from")
                        && i > 0
                        && tokens[i - 1].token.is_keyword("distinct")) =>
            {
                end = i;
                break;
            }
            _ => {}
        }
    }
    items.push(from..end);
    items
}

/// Where the statement's (first) SELECT is: at the start, or after a WITH's definitions.
fn first_select(tokens: &[Spanned<'_>]) -> Option<usize> {
    let first = tokens.first()?;
    if first.token.is_keyword("select") {
        return Some(0);
    }
    if !first.token.is_keyword("with") {
        return None;
    }
    let mut depth = 0i32;
    for (i, t) in tokens.iter().enumerate() {
        match &t.token {
            Token::Punct("(") => depth += 1,
            Token::Punct(")") => depth -= 1,
            Token::Word(_) if depth == 0 && i > 0 && t.token.is_keyword("select") => {
                return Some(i);
            }
            Token::Word(_)
                if depth == 0
                    && ["insert", "update", "delete", "replace"]
                        .iter()
                        .any(|k| t.token.is_keyword(k)) =>
            {
                return None;
            }
            _ => {}
        }
    }
    None
}

/// One select item's name: `Some(None)` where SQLite's name is PostgreSQL's too, `None` for
/// a `*` (the whole list then keeps SQLite's names).
fn name_of(item: &[Spanned<'_>]) -> Option<Option<String>> {
    let words: Vec<&Token<'_>> = item.iter().map(|t| &t.token).collect();
    // `… AS name`: the alias, whatever comes before it (`count(*) OVER () AS total`).
    if let [.., before, last] = words.as_slice()
        && before.is_keyword("as")
        && is_column(last)
    {
        return Some(None);
    }
    // `f(…) OVER …`, `f(…) FILTER (…)` and `x COLLATE c` are named as what comes before.
    let mut depth = 0i32;
    for (i, t) in words.iter().enumerate() {
        match t {
            Token::Punct("(") => depth += 1,
            Token::Punct(")") => depth -= 1,
            _ if depth == 0
                && i > 0
                && (t.is_keyword("over") || t.is_keyword("filter") || t.is_keyword("collate")) =>
            {
                return name_of(&item[..i]).map(|name| {
                    // A column stays SQLite's only if SQLite named it so: with a tail, it did not.
                    name.or_else(|| words[i - 1].identifier())
                });
            }
            _ => {}
        }
    }
    // `x::double precision`, `x::character varying`: type words, not an alias.
    let typed = words.last().is_some_and(|t| {
        ["precision", "varying", "zone"]
            .iter()
            .any(|k| t.is_keyword(k))
    });
    if typed {
        return Some(Some(expression_name(&words)));
    }
    match words.as_slice() {
        [] => Some(None),
        [Token::Punct("*")] | [.., Token::Punct("."), Token::Punct("*")] => None,
        // A column, `t.column` or an alias: SQLite's name is PostgreSQL's.
        [one] if is_column(one) => Some(None),
        [.., Token::Punct("."), last] if is_column(last) && all_dotted(&words) => Some(None),
        [.., before, last] if is_alias(before, last) => Some(None),
        _ => Some(Some(expression_name(&words))),
    }
}

fn is_column(token: &Token<'_>) -> bool {
    match token {
        Token::QuotedIdent(_) => true,
        Token::Word(_) => !NOT_ALIASES.iter().any(|k| token.is_keyword(k)),
        _ => false,
    }
}

fn all_dotted(words: &[&Token<'_>]) -> bool {
    words.iter().enumerate().all(|(i, t)| {
        if i % 2 == 1 {
            **t == Token::Punct(".")
        } else {
            is_column(t)
        }
    })
}

/// `expr AS name` or `expr name`.
fn is_alias(before: &Token<'_>, last: &Token<'_>) -> bool {
    if !is_column(last) {
        return false;
    }
    if before.is_keyword("as") {
        return true;
    }
    match before {
        Token::Punct(p) => *p == ")",
        Token::Word(_) => !OPERATOR_WORDS.iter().any(|k| before.is_keyword(k)),
        Token::Number(_) | Token::Str(_) | Token::QuotedIdent(_) | Token::Param(_) => true,
        Token::SqliteParam(_) => true,
    }
}

/// PostgreSQL's name for an expression without an alias.
fn expression_name(words: &[&Token<'_>]) -> String {
    let unknown = || "?column?".to_owned();
    // A cast the whole expression is: `x::int`, `f(x)::text`, `(a + b)::int`.
    let mut depth = 0i32;
    let mut cast_at = None;
    for (i, t) in words.iter().enumerate() {
        match t {
            Token::Punct("(") => depth += 1,
            Token::Punct(")") => depth -= 1,
            Token::Punct("::") if depth == 0 => cast_at = Some(i),
            _ => {}
        }
    }
    if let Some(i) = cast_at {
        let operand = &words[..i];
        let type_words = &words[i + 1..];
        let whole_operand = operand.len() == 1 || one_call(operand) || one_group(operand);
        let only_type = type_words.iter().enumerate().all(|(j, t)| match t {
            Token::Word(_) if j == 0 => true,
            Token::Word(_) => ["precision", "varying", "with", "without", "time", "zone"]
                .iter()
                .any(|k| t.is_keyword(k)),
            Token::Number(_) | Token::Punct("(" | ")" | ",") => j > 0,
            _ => false,
        });
        if whole_operand && only_type && !type_words.is_empty() {
            return type_words[0]
                .identifier()
                .map_or_else(unknown, |ty| type_name(&ty));
        }
        return unknown();
    }
    match words {
        [cast, ..] if cast.is_keyword("cast") && one_call(words) => {
            let as_at = words.iter().rposition(|t| t.is_keyword("as"));
            as_at
                .and_then(|a| words.get(a + 1))
                .and_then(|t| t.identifier())
                .map_or_else(unknown, |ty| type_name(&ty))
        }
        [case, .., end] if case.is_keyword("case") && end.is_keyword("end") && one_case(words) => {
            "case".into()
        }
        [word] if word.is_keyword("true") || word.is_keyword("false") => "bool".into(),
        [word] if word.is_keyword("null") => unknown(),
        [word] if NOT_ALIASES.iter().any(|k| word.is_keyword(k)) => {
            word.identifier().unwrap_or_else(unknown)
        }
        // A call (`f(…)`, `schema.f(…)`) that is the whole expression.
        _ if one_call(words) => {
            let open = words.iter().position(|t| **t == Token::Punct("("));
            open.and_then(|p| p.checked_sub(1))
                .map(|f| words[f])
                .filter(|f| matches!(f, Token::Word(_) | Token::QuotedIdent(_)))
                .and_then(|f| f.identifier())
                .unwrap_or_else(unknown)
        }
        _ => unknown(),
    }
}

/// Whether the words are one call: a name (maybe `schema.`-qualified), then a `(` that the
/// last `)` closes.
fn one_call(words: &[&Token<'_>]) -> bool {
    let Some(open) = words.iter().position(|t| **t == Token::Punct("(")) else {
        return false;
    };
    open > 0 && all_dotted(&words[..open]) && closes_at_end(words, open)
}

/// Whether the words are one parenthesized group: the first `(` is closed by the last `)`.
fn one_group(words: &[&Token<'_>]) -> bool {
    words.first().is_some_and(|t| **t == Token::Punct("(")) && closes_at_end(words, 0)
}

/// Whether the `(` at `open` is closed by the last word.
fn closes_at_end(words: &[&Token<'_>], open: usize) -> bool {
    let mut depth = 0i32;
    for (i, t) in words.iter().enumerate().skip(open) {
        match t {
            Token::Punct("(") => depth += 1,
            Token::Punct(")") => {
                depth -= 1;
                if depth == 0 {
                    return i + 1 == words.len();
                }
            }
            _ => {}
        }
    }
    false
}

/// Whether the first CASE is closed by the last END (`CASE … END || CASE … END` is not one).
fn one_case(words: &[&Token<'_>]) -> bool {
    let mut depth = 0i32;
    for (i, t) in words.iter().enumerate() {
        if t.is_keyword("case") {
            depth += 1;
        } else if t.is_keyword("end") {
            depth -= 1;
            if depth == 0 {
                return i + 1 == words.len();
            }
        }
    }
    false
}

/// PostgreSQL's internal name of a type, as it names a cast's column.
fn type_name(ty: &str) -> String {
    match ty {
        "integer" | "int" | "int4" => "int4",
        "bigint" | "int8" => "int8",
        "smallint" | "int2" => "int2",
        "boolean" | "bool" => "bool",
        "real" | "float4" => "float4",
        "double" | "float8" | "float" => "float8",
        "decimal" | "numeric" => "numeric",
        "character" | "char" => "bpchar",
        "varchar" => "varchar",
        other => other,
    }
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::lexer;

    fn names(sql: &str) -> Option<Vec<Option<String>>> {
        of_select(&lexer::tokenize(sql).unwrap())
    }

    /// node-postgres read `count(*) OVER () AS total` as `row.count`: the alias after a
    /// window lost to the call's name; and `ARRAY['a', 'b'] AS x` was split at its commas.
    #[test]
    fn an_alias_after_a_window_was_the_calls_name() {
        assert_eq!(
            names("SELECT count(*) OVER () AS total, ARRAY['a', 'b'] AS x, 1"),
            Some(vec![None, None, Some("?column?".into())])
        );
    }

    fn named(sql: &str) -> Vec<String> {
        names(sql)
            .unwrap()
            .into_iter()
            .map(|n| n.unwrap_or_else(|| "(sqlite's)".into()))
            .collect()
    }

    #[test]
    fn expressions_without_an_alias_are_named_as_postgresql_names_them() {
        assert_eq!(
            named("SELECT count(*), max(t.a), pg_catalog.version(), current_user FROM t"),
            ["count", "max", "version", "current_user"]
        );
        assert_eq!(
            named("select $1::int + 1, 1 + 1, CAST(x AS BIGINT), x::text, CASE WHEN a THEN 1 END"),
            ["?column?", "?column?", "int8", "text", "case"]
        );
        assert_eq!(
            named("SELECT a, t.b, count(*) AS n, sum(x) total, \"Total (all)\", 'x' y FROM t"),
            ["(sqlite's)"; 6]
        );
        assert_eq!(
            named("WITH c AS (SELECT 1) SELECT DISTINCT coalesce(a, 0) FROM c ORDER BY 1"),
            ["coalesce"]
        );
        assert_eq!(
            named("SELECT a IS NOT NULL, NOT b FROM t"),
            ["?column?", "?column?"]
        );
        // Found in review.
        assert_eq!(
            named(
                "SELECT a IS DISTINCT FROM b AS changed, count(*) OVER (PARTITION BY a), row_number() OVER w FROM t"
            ),
            ["(sqlite's)", "count", "row_number"]
        );
        assert_eq!(
            named(
                "SELECT a + b::int, x::int IS NULL, CAST(a AS TEXT) || CAST(b AS TEXT), CASE WHEN a THEN 1 END || CASE WHEN b THEN 2 END FROM t"
            ),
            ["?column?"; 4]
        );
        assert_eq!(
            named("SELECT NULL, TRUE, x::double precision, (a + b)::int, a COLLATE nocase FROM t"),
            ["?column?", "bool", "float8", "int4", "a"]
        );
        assert_eq!(names("SELECT * FROM t"), None);
        assert_eq!(names("SELECT t.*, 1 FROM t"), None);
        assert_eq!(names("INSERT INTO t VALUES (1)"), None);
        assert_eq!(names("WITH c AS (SELECT 1) DELETE FROM t"), None);
    }
}
