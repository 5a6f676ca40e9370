//! PostgreSQL's set-returning functions in FROM, whose alias names their column:
//! `FROM generate_series(1, 10) x` has a column `x` (and `AS g(n)` a column `n`). Each
//! becomes a subquery naming its `value` as PostgreSQL would (with `WITH ORDINALITY`, a second
//! column numbering the rows); `unnest(array)` reads the array's elements (`arrays`), and
//! `pg_partition_ancestors(rel)` is the relation alone (Cairn has no partitions).
//!
//! In a select list, `unnest(x)` and `generate_subscripts(x, 1)` (which PostgreSQL steps
//! together, one row per element) become the `value` and position of one `json_each` of
//! `x` joined to the FROM clause, as a lateral join would be: SQLAlchemy reads index
//! columns that way.
//!
//! `generate_series(start, stop[, step])` is a recursive CTE that stops before its next
//! value would pass `stop` (so it never overflows), refuses a zero step as PostgreSQL does,
//! and counts down with a negative one. Its arguments are evaluated in the subquery: they
//! cannot name columns of the FROM items beside it (PostgreSQL's implicit LATERAL).
//!
//! A subquery in FROM with a column list, `(VALUES (1, 'a')) AS v(id, name)` (SQLAlchemy's
//! batched inserts), becomes a CTE with that column list, which SQLite has.

use std::borrow::Cow;

use super::quoted;
use crate::sql::lexer::{self, Spanned, Token};

/// The functions, and what SQLite reads their rows from.
const FUNCTIONS: &[(&str, &str)] = &[
    ("generate_series", ""),
    ("unnest", "json_each(cairn_array_json({}))"),
    (
        "pg_partition_ancestors",
        "(SELECT CAST({} AS INTEGER) AS value)",
    ),
    // The options of a foreign-data wrapper, server or table: Cairn has none.
    ("pg_options_to_table", ""),
];

/// Words that end a FROM item rather than alias it.
const NOT_ALIASES: &[&str] = &[
    "where",
    "join",
    "inner",
    "left",
    "right",
    "full",
    "cross",
    "natural",
    "on",
    "using",
    "group",
    "order",
    "limit",
    "offset",
    "union",
    "except",
    "intersect",
    "having",
    "window",
    "with",
    "returning",
    "set",
    "values",
];

/// `text` with those calls rewritten; borrowed when it has none.
pub fn rewrite(text: &str) -> Cow<'_, str> {
    match calls(text) {
        Cow::Owned(rewritten) => Cow::Owned(fields(&rewritten).into_owned()),
        Cow::Borrowed(text) => fields(text),
    }
}

fn calls(text: &str) -> Cow<'_, str> {
    let text = match column_lists(text) {
        Cow::Owned(rewritten) => return Cow::Owned(calls(&rewritten).into_owned()),
        Cow::Borrowed(_) => text,
    };
    if !FUNCTIONS.iter().any(|(f, _)| super::mentions(text, f))
        && !super::mentions(text, "_pg_expandarray")
    {
        return Cow::Borrowed(text);
    }
    let Ok(tokens) = lexer::tokenize(text) else {
        return Cow::Borrowed(text);
    };
    let mut edits: Vec<(usize, usize, String)> = in_select_lists(text, &tokens);
    if !edits.is_empty() {
        // One kind of rewrite a pass: the select lists' edits span FROM items too; the
        // result (with no set-returning call left in a select list) is read again.
        edits.sort_by_key(|e| e.0);
        let joined = super::edited(text, edits).into_owned();
        return Cow::Owned(rewrite(&joined).into_owned());
    }
    let mut i = 0;
    while i < tokens.len() {
        let t = &tokens[i];
        let function = FUNCTIONS.iter().find(|(f, _)| t.token.is_keyword(f));
        if let Some((name, source)) = function
            && tokens
                .get(i + 1)
                .is_some_and(|p| p.token == Token::Punct("("))
            && in_from(&tokens, i)
            && let Some(close) = super::closing(&tokens, i + 1)
        {
            let args = if close > i + 2 {
                &text[tokens[i + 2].start..tokens[close - 1].end]
            } else {
                ""
            };
            let mut end = close;
            let mut alias = (*name).to_owned();
            let mut columns: Vec<String> = Vec::new();
            let mut at = close + 1;
            let ordinality = tokens.get(at).is_some_and(|w| w.token.is_keyword("with"))
                && tokens
                    .get(at + 1)
                    .is_some_and(|o| o.token.is_keyword("ordinality"));
            if ordinality {
                end = at + 1;
                at += 2;
            }
            if tokens.get(at).is_some_and(|a| a.token.is_keyword("as")) {
                at += 1;
            }
            if let Some(word) = tokens.get(at)
                && let Some(name) = alias_name(&word.token)
            {
                alias = name;
                end = at;
                // AS g(n) or AS a(value, number): the columns' own names.
                if tokens
                    .get(at + 1)
                    .is_some_and(|p| p.token == Token::Punct("("))
                    && let Some(list_end) = super::closing(&tokens, at + 1)
                {
                    columns = tokens[at + 2..list_end]
                        .iter()
                        .filter_map(|c| c.token.identifier())
                        .collect();
                    end = list_end;
                }
            }
            if *name == "pg_options_to_table" {
                edits.push((
                    t.start,
                    tokens[end].end,
                    format!(
                        "(SELECT CAST(NULL AS TEXT) AS option_name, CAST(NULL AS TEXT) AS option_value WHERE 0) AS {}",
                        quoted(&alias)
                    ),
                ));
                i = end + 1;
                continue;
            }
            let value = columns.first().cloned().unwrap_or_else(|| alias.clone());
            let numbered = if ordinality {
                let name = columns.get(1).map_or("ordinality", String::as_str);
                format!(", row_number() OVER () AS {}", quoted(name))
            } else {
                String::new()
            };
            edits.push((
                t.start,
                tokens[end].end,
                format!(
                    "(SELECT value AS {}{numbered} FROM {}) AS {}",
                    quoted(&value),
                    source_of(name, source, &rewrite(args)),
                    quoted(&alias)
                ),
            ));
            i = end + 1;
            continue;
        }
        i += 1;
    }
    super::edited(text, edits)
}

/// What a set-returning call of a select list gives of each element it steps over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stepped {
    /// `unnest(x)`: the element.
    Element,
    /// `generate_subscripts(x, 1)`: its position, from 1.
    Subscript,
    /// `information_schema._pg_expandarray(x)` (pgJDBC's key columns): a row of both,
    /// `(x, n)`.
    Both,
}

/// The edits that join `unnest(x)`, `generate_subscripts(x, 1)` and `_pg_expandarray(x)` of
/// each select list to its FROM clause.
fn in_select_lists(text: &str, tokens: &[Spanned<'_>]) -> Vec<(usize, usize, String)> {
    let mut edits = Vec::new();
    let mut joined = 0usize;
    for (at, t) in tokens.iter().enumerate() {
        if !t.token.is_keyword("select") {
            continue;
        }
        // The list runs to FROM at this depth; the FROM clause to the next clause word.
        let mut depth = 0i32;
        let mut from = None;
        let mut end = tokens.len();
        let mut calls: Vec<(usize, usize, Stepped)> = Vec::new();
        for j in at + 1..tokens.len() {
            match &tokens[j].token {
                Token::Punct("(") => depth += 1,
                Token::Punct(")") => {
                    if depth == 0 {
                        end = j;
                        break;
                    }
                    depth -= 1;
                }
                Token::Punct(";") if depth == 0 => {
                    end = j;
                    break;
                }
                // `(_pg_expandarray(x)).n`: the call alone in parentheses of this list.
                Token::Word(w)
                    if depth == 0
                        || (depth == 1
                            && w.eq_ignore_ascii_case("_pg_expandarray")
                            && tokens[j - 1].token == Token::Punct("(")) =>
                {
                    let w = w.to_ascii_lowercase();
                    match w.as_str() {
                        "from" if from.is_none() => from = Some(j),
                        // INSERT … SELECT … ON CONFLICT: the upsert's clause.
                        "on" if tokens
                            .get(j + 1)
                            .is_some_and(|c| c.token.is_keyword("conflict")) =>
                        {
                            end = j;
                            break;
                        }
                        "where" | "group" | "having" | "window" | "order" | "limit" | "union"
                        | "except" | "intersect" | "returning" => {
                            end = j;
                            break;
                        }
                        "unnest" | "generate_subscripts" | "_pg_expandarray"
                            if from.is_none()
                                && tokens
                                    .get(j + 1)
                                    .is_some_and(|p| p.token == Token::Punct("(")) =>
                        {
                            if let Some(close) = super::closing(tokens, j + 1) {
                                let kind = match w.as_str() {
                                    "unnest" => Stepped::Element,
                                    "generate_subscripts" => Stepped::Subscript,
                                    _ => Stepped::Both,
                                };
                                calls.push((j, close, kind));
                            }
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        if calls.is_empty() {
            continue;
        }
        // One join per array: calls over the same array share it, and step together.
        let mut arrays: Vec<(String, String)> = Vec::new();
        for (name, close, kind) in calls {
            let args_start = tokens[name + 1].end;
            let args = &text[args_start..tokens[close].start];
            let array = if kind == Stepped::Subscript {
                // generate_subscripts(x, dimension): the array before the last comma.
                args.rsplit_once(',').map_or(args, |(a, _)| a).trim()
            } else {
                args.trim()
            };
            let alias = match arrays.iter().find(|(a, _)| a == array) {
                Some((_, alias)) => alias.clone(),
                None => {
                    joined += 1;
                    let alias = format!("cairn_unnest_{joined}");
                    arrays.push((array.to_owned(), alias.clone()));
                    alias
                }
            };
            let column = match kind {
                Stepped::Element => format!("{alias}.value"),
                Stepped::Subscript => format!("({alias}.key + 1)"),
                // A row of both, which `(row).x` and `(row).n` read (see `fields`).
                Stepped::Both => {
                    format!("json_object('x', {alias}.value, 'n', {alias}.key + 1)")
                }
            };
            edits.push((tokens[name].start, tokens[close].end, column));
        }
        // Different arrays step together too: each further one is joined on the position.
        let mut joins = String::new();
        for (n, (array, alias)) in arrays.iter().enumerate() {
            let each = format!("json_each(cairn_array_json({array})) AS {alias}");
            match n {
                0 => joins.push_str(&each),
                _ => joins.push_str(&format!(
                    " LEFT JOIN {each} ON {alias}.key = {}.key",
                    arrays[0].1
                )),
            }
        }
        let insert_at = match end.checked_sub(1) {
            Some(last) if end > at + 1 => tokens[last].end,
            _ => t.end,
        };
        let addition = if from.is_some() {
            format!(", {joins}")
        } else {
            format!(" FROM {joins}")
        };
        edits.push((insert_at, insert_at, addition));
    }
    edits
}

/// Keywords after which a parenthesis opens an expression, not a call's arguments.
const EXPRESSION_FOLLOWS: &[&str] = &[
    "select",
    "where",
    "and",
    "or",
    "not",
    "on",
    "when",
    "then",
    "else",
    "by",
    "case",
    "as",
    "having",
    "distinct",
    "all",
    "set",
    "values",
    "returning",
    "is",
    "like",
    "between",
];

/// A field of a row value, `(row).name`, as SQLite reads the JSON object the rows above are
/// made of: `json_extract(row, '$.name')`. SQLite has no such syntax, so no statement of
/// its own changes.
fn fields(text: &str) -> Cow<'_, str> {
    if !text.contains(").") {
        return Cow::Borrowed(text);
    }
    let Ok(tokens) = lexer::tokenize(text) else {
        return Cow::Borrowed(text);
    };
    let mut edits = Vec::new();
    let mut open: Vec<usize> = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        match &t.token {
            Token::Punct("(") => open.push(i),
            Token::Punct(")") => {
                let Some(start) = open.pop() else { continue };
                // A word before the parenthesis names a function, unless it is a keyword an
                // expression can follow.
                let called = start
                    .checked_sub(1)
                    .is_some_and(|b| match &tokens[b].token {
                        Token::QuotedIdent(_) => true,
                        Token::Word(w) => {
                            !EXPRESSION_FOLLOWS.iter().any(|k| w.eq_ignore_ascii_case(k))
                        }
                        _ => false,
                    });
                let field = match (tokens.get(i + 1), tokens.get(i + 2)) {
                    (Some(dot), Some(name)) if dot.token == Token::Punct(".") => {
                        name.token.identifier()
                    }
                    _ => None,
                };
                if let Some(field) = field.filter(|_| !called && i > start + 1) {
                    edits.push((
                        tokens[start].start,
                        tokens[start].end,
                        "json_extract(".to_owned(),
                    ));
                    edits.push((
                        t.start,
                        tokens[i + 2].end,
                        format!(", '$.{}')", field.replace('\'', "''")),
                    ));
                }
            }
            _ => {}
        }
    }
    edits.sort_by_key(|e| e.0);
    super::edited(text, edits)
}

/// `(subquery) [AS] name(a, b)` in FROM as `(WITH name(a, b) AS (subquery) SELECT * FROM
/// name) AS name`; borrowed when there is none.
fn column_lists(text: &str) -> Cow<'_, str> {
    if !text.contains(')')
        || !(super::mentions_word(text, "values") || super::mentions_word(text, "select"))
    {
        return Cow::Borrowed(text);
    }
    let Ok(tokens) = lexer::tokenize(text) else {
        return Cow::Borrowed(text);
    };
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    for (open, t) in tokens.iter().enumerate() {
        let opens_query = t.token == Token::Punct("(")
            && tokens.get(open + 1).is_some_and(|q| {
                q.token.is_keyword("select")
                    || q.token.is_keyword("values")
                    || q.token.is_keyword("with")
            });
        if !opens_query || !in_from(&tokens, open) || edits.last().is_some_and(|e| e.1 > t.start) {
            continue;
        }
        let Some(close) = super::closing(&tokens, open) else {
            continue;
        };
        let mut at = close + 1;
        if tokens.get(at).is_some_and(|a| a.token.is_keyword("as")) {
            at += 1;
        }
        let Some(alias) = tokens.get(at).and_then(|a| alias_name(&a.token)) else {
            continue;
        };
        if tokens
            .get(at + 1)
            .is_none_or(|p| p.token != Token::Punct("("))
        {
            continue;
        }
        let Some(list_end) = super::closing(&tokens, at + 1) else {
            continue;
        };
        let columns: Vec<String> = tokens[at + 2..list_end]
            .iter()
            .filter_map(|c| c.token.identifier())
            .map(|c| quoted(&c))
            .collect();
        let query = &text[tokens[open + 1].start..tokens[close - 1].end];
        // The CTE's own name: the subquery may read a table of the alias's name.
        let name = quoted(&alias);
        let cte = format!("cairn_columns_{}", edits.len() + 1);
        edits.push((
            t.start,
            tokens[list_end].end,
            format!(
                "(WITH {cte}({}) AS ({query}) SELECT * FROM {cte}) AS {name}",
                columns.join(", ")
            ),
        ));
    }
    super::edited(text, edits)
}

/// What a call's rows are read from, given its arguments' text.
fn source_of(name: &str, template: &str, args: &str) -> String {
    if name != "generate_series" {
        return template.replace("{}", args);
    }
    let (start, stop, step) = match split_arguments(args).as_slice() {
        [start, stop] => (start.clone(), stop.clone(), "1".to_owned()),
        [start, stop, step] => (start.clone(), stop.clone(), step.clone()),
        // SQLite says what is wrong with the call.
        _ => return format!("cairn_series_step({args})"),
    };
    // The arguments once, as integers (a parameter arrives as text), in a seed row.
    format!(
        "(WITH RECURSIVE cairn_args(a, b, s) AS (SELECT CAST(({start}) AS INTEGER), CAST(({stop}) AS INTEGER), cairn_series_step(CAST(({step}) AS INTEGER))), cairn_series(value) AS (SELECT a FROM cairn_args WHERE s > 0 AND a <= b OR s < 0 AND a >= b UNION ALL SELECT value + s FROM cairn_series, cairn_args WHERE s > 0 AND value <= b - s OR s < 0 AND value >= b - s) SELECT value FROM cairn_series)"
    )
}

/// A call's arguments, split at its top-level commas.
fn split_arguments(args: &str) -> Vec<String> {
    let Ok(tokens) = lexer::tokenize(args) else {
        return vec![args.to_owned()];
    };
    let mut out = Vec::new();
    let mut from = 0;
    let mut depth = 0i32;
    for t in &tokens {
        match t.token {
            Token::Punct("(" | "[") => depth += 1,
            Token::Punct(")" | "]") => depth -= 1,
            Token::Punct(",") if depth == 0 => {
                out.push(args[from..t.start].trim().to_owned());
                from = t.end;
            }
            _ => {}
        }
    }
    out.push(args[from..].trim().to_owned());
    out
}

/// A FROM item's alias, if the token can be one.
fn alias_name(token: &Token<'_>) -> Option<String> {
    match token {
        Token::Word(w) if NOT_ALIASES.iter().any(|k| w.eq_ignore_ascii_case(k)) => None,
        Token::Word(_) | Token::QuotedIdent(_) => token.identifier(),
        _ => None,
    }
}

/// Whether the call at `at` is a FROM item: the nearest clause word before it, at its own
/// depth of parentheses, is FROM or JOIN.
fn in_from(tokens: &[Spanned<'_>], at: usize) -> bool {
    let mut depth = 0i32;
    for j in (0..at).rev() {
        match &tokens[j].token {
            Token::Punct(")") => depth += 1,
            Token::Punct("(") => {
                if depth == 0 {
                    return false;
                }
                depth -= 1;
            }
            Token::Word(w) if depth == 0 => {
                let w = w.to_ascii_lowercase();
                match w.as_str() {
                    "from" | "join" => return true,
                    "select" | "where" | "on" | "group" | "having" | "order" | "limit" | "set"
                    | "values" | "returning" | "using" => return false,
                    _ => {}
                }
            }
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_returning_calls_in_from_name_their_column_after_their_alias() {
        let series = |start: &str, stop: &str, step: &str| {
            source_of("generate_series", "", &format!("{start}, {stop}{step}"))
        };
        assert_eq!(
            rewrite("INSERT INTO t SELECT x, x * 2 FROM generate_series(1, 1000) x"),
            format!(
                "INSERT INTO t SELECT x, x * 2 FROM (SELECT value AS \"x\" FROM {}) AS \"x\"",
                series("1", "1000", "")
            )
        );
        assert_eq!(
            rewrite("SELECT n FROM generate_series(1, 3) AS g(n) WHERE n > 1"),
            format!(
                "SELECT n FROM (SELECT value AS \"n\" FROM {}) AS \"g\" WHERE n > 1",
                series("1", "3", "")
            )
        );
        assert_eq!(
            rewrite("SELECT * FROM generate_series(0, f(1, 2)), t"),
            format!(
                "SELECT * FROM (SELECT value AS \"generate_series\" FROM {}) AS \"generate_series\", t",
                series("0", "f(1, 2)", "")
            )
        );
        assert_eq!(
            split_arguments("1, f(2, 3), 'a,b'"),
            ["1", "f(2, 3)", "'a,b'"]
        );
    }

    #[test]
    fn subqueries_in_from_take_their_column_lists() {
        assert_eq!(
            rewrite(
                "INSERT INTO b (t) SELECT p0 FROM (VALUES ('x', 0), ('y', 1)) AS imp_sen(p0, sen_counter) ORDER BY sen_counter"
            ),
            "INSERT INTO b (t) SELECT p0 FROM (WITH cairn_columns_1(\"p0\", \"sen_counter\") AS (VALUES ('x', 0), ('y', 1)) SELECT * FROM cairn_columns_1) AS \"imp_sen\" ORDER BY sen_counter"
        );
        // A plain subquery, and an IN list, as they were.
        for same in [
            "SELECT * FROM (SELECT 1) AS s",
            "SELECT 1 WHERE x IN (SELECT 1)",
        ] {
            assert_eq!(rewrite(same), same);
        }
        assert_eq!(
            rewrite("SELECT u FROM unnest('{a,b}') u"),
            "SELECT u FROM (SELECT value AS \"u\" FROM json_each(cairn_array_json('{a,b}'))) AS \"u\""
        );
        assert_eq!(
            rewrite(
                "FROM u, pg_partition_ancestors(t.tgrelid) WITH ORDINALITY AS a(relid, depth) WHERE"
            ),
            "FROM u, (SELECT value AS \"relid\", row_number() OVER () AS \"depth\" FROM (SELECT CAST(t.tgrelid AS INTEGER) AS value)) AS \"a\" WHERE"
        );
    }

    /// pgJDBC's getPrimaryKeys and getIndexInfo read key columns through
    /// `information_schema._pg_expandarray(indkey)`, a row `(x, n)` per element, and its
    /// fields `(keys).x`: a syntax error for SQLite.
    #[test]
    fn pgjdbc_s_expandarray_and_its_fields_were_syntax_errors() {
        assert_eq!(
            rewrite(
                "SELECT r.a FROM (SELECT (_pg_expandarray(i.k)).n AS a, _pg_expandarray(i.k) AS keys FROM i) r WHERE r.b = (r.keys).x"
            ),
            "SELECT r.a FROM (SELECT json_extract(json_object('x', cairn_unnest_1.value, 'n', cairn_unnest_1.key + 1), '$.n') AS a, json_object('x', cairn_unnest_1.value, 'n', cairn_unnest_1.key + 1) AS keys FROM i, json_each(cairn_array_json(i.k)) AS cairn_unnest_1) r WHERE r.b = json_extract(r.keys, '$.x')"
        );
        // A call's parentheses, and SQLite's own syntax, stay as they are.
        for same in ["SELECT f(x).y FROM t", "SELECT (a + b) AS c FROM t"] {
            assert_eq!(rewrite(same), same);
        }
    }

    #[test]
    fn set_returning_calls_in_a_select_list_step_together_over_a_join() {
        assert_eq!(
            rewrite(
                "SELECT c.id, unnest(i.indkey) AS attnum, generate_subscripts(i.indkey, 1) AS ord FROM c JOIN i ON i.x = c.id WHERE c.id IN (1)"
            ),
            "SELECT c.id, cairn_unnest_1.value AS attnum, (cairn_unnest_1.key + 1) AS ord FROM c JOIN i ON i.x = c.id, json_each(cairn_array_json(i.indkey)) AS cairn_unnest_1 WHERE c.id IN (1)"
        );
        assert_eq!(
            rewrite("SELECT unnest(i.indkey) AS a, unnest(i.indclass) AS c FROM i"),
            "SELECT cairn_unnest_1.value AS a, cairn_unnest_2.value AS c FROM i, json_each(cairn_array_json(i.indkey)) AS cairn_unnest_1 LEFT JOIN json_each(cairn_array_json(i.indclass)) AS cairn_unnest_2 ON cairn_unnest_2.key = cairn_unnest_1.key"
        );
        assert_eq!(
            rewrite("SELECT unnest('{1,2}')"),
            "SELECT cairn_unnest_1.value FROM json_each(cairn_array_json('{1,2}')) AS cairn_unnest_1"
        );
        assert_eq!(
            rewrite("SELECT a FROM (SELECT unnest(x) AS a FROM t) AS s"),
            "SELECT a FROM (SELECT cairn_unnest_1.value AS a FROM t, json_each(cairn_array_json(x)) AS cairn_unnest_1) AS s"
        );
    }
}
