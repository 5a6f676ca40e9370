//! PostgreSQL's set-returning functions in FROM, whose alias names their column:
//! `FROM generate_series(1, 10) x` has a column `x` (and `AS g(n)` a column `n`), where
//! SQLite's table-valued `generate_series` has a column `value` whatever the alias. Each
//! becomes a subquery naming `value` as PostgreSQL would (with `WITH ORDINALITY`, a second
//! column numbering the rows); `unnest(array)` reads the array's elements (`arrays`), and
//! `pg_partition_ancestors(rel)` is the relation alone (Cairn has no partitions).

use std::borrow::Cow;

use crate::sql::lexer::{self, Spanned, Token};

/// The functions, and what SQLite reads their rows from.
const FUNCTIONS: &[(&str, &str)] = &[
    ("generate_series", "generate_series({})"),
    ("unnest", "json_each(cairn_array_json({}))"),
    (
        "pg_partition_ancestors",
        "(SELECT CAST({} AS INTEGER) AS value)",
    ),
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
    if !FUNCTIONS.iter().any(|(f, _)| super::mentions(text, f)) {
        return Cow::Borrowed(text);
    }
    let Ok(tokens) = lexer::tokenize(text) else {
        return Cow::Borrowed(text);
    };
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let t = &tokens[i];
        let function = FUNCTIONS.iter().find(|(f, _)| t.token.is_keyword(f));
        if let Some((name, source)) = function
            && tokens
                .get(i + 1)
                .is_some_and(|p| p.token == Token::Punct("("))
            && in_from(&tokens, i)
            && let Some(close) = matching_close(&tokens, i + 1)
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
                    && let Some(list_end) = matching_close(&tokens, at + 1)
                {
                    columns = tokens[at + 2..list_end]
                        .iter()
                        .filter_map(|c| c.token.identifier())
                        .collect();
                    end = list_end;
                }
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
                    source.replace("{}", &rewrite(args)),
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

/// A FROM item's alias, if the token can be one.
fn alias_name(token: &Token<'_>) -> Option<String> {
    match token {
        Token::Word(w) if NOT_ALIASES.iter().any(|k| w.eq_ignore_ascii_case(k)) => None,
        Token::Word(_) | Token::QuotedIdent(_) => token.identifier(),
        _ => None,
    }
}

fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
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

fn matching_close(tokens: &[Spanned<'_>], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (j, t) in tokens.iter().enumerate().skip(open) {
        match t.token {
            Token::Punct("(") => depth += 1,
            Token::Punct(")") => {
                depth -= 1;
                if depth == 0 {
                    return Some(j);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_returning_calls_in_from_name_their_column_after_their_alias() {
        assert_eq!(
            rewrite("INSERT INTO t SELECT x, x * 2 FROM generate_series(1, 1000) x"),
            "INSERT INTO t SELECT x, x * 2 FROM (SELECT value AS \"x\" FROM generate_series(1, 1000)) AS \"x\""
        );
        assert_eq!(
            rewrite("SELECT n FROM generate_series(1, 3) AS g(n) WHERE n > 1"),
            "SELECT n FROM (SELECT value AS \"n\" FROM generate_series(1, 3)) AS \"g\" WHERE n > 1"
        );
        assert_eq!(
            rewrite("SELECT * FROM generate_series(0, 2), t"),
            "SELECT * FROM (SELECT value AS \"generate_series\" FROM generate_series(0, 2)) AS \"generate_series\", t"
        );
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
        // Not in FROM: as it was.
        assert_eq!(
            rewrite("SELECT unnest(x) FROM t"),
            "SELECT unnest(x) FROM t"
        );
    }
}
