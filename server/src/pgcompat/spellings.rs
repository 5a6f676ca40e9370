//! PostgreSQL spellings of names SQLite cannot read: a function, table or type qualified by
//! `pg_catalog` (`pg_catalog.version()`, which SQLAlchemy sends; `pg_catalog.pg_class`, which
//! psql reads) loses the qualifier, a view of `information_schema` becomes the session's table
//! standing for it (`catalogs`), and the SQL standard's session functions written without
//! parentheses (`current_user`, `session_user`, `current_role`, `current_schema`,
//! `current_catalog`) get them, so that they reach the functions the session defines.

use std::borrow::Cow;

use crate::sql::lexer::{self, Spanned, Token};

/// PostgreSQL's functions with a SQLite twin of another name (booleans are 0 and 1, so
/// `bool_and` is their minimum).
const RENAMED: &[(&str, &str)] = &[
    ("bool_and", "min"),
    ("bool_or", "max"),
    ("every", "min"),
    ("json_build_object", "json_object"),
    ("jsonb_build_object", "json_object"),
    ("json_build_array", "json_array"),
    ("jsonb_build_array", "json_array"),
    ("json_agg", "json_group_array"),
    ("jsonb_agg", "json_group_array"),
    ("json_object_agg", "json_group_object"),
    ("jsonb_object_agg", "json_group_object"),
];

/// The functions SQL writes without parentheses.
const BARE: &[&str] = &[
    "current_user",
    "session_user",
    "current_role",
    "current_schema",
    "current_catalog",
];

/// `text` with those spellings rewritten; borrowed when there are none (or the text does
/// not tokenize, which SQLite then reports).
pub fn rewrite(text: &str) -> Cow<'_, str> {
    if !super::mentions(text, "pg_catalog.")
        && !super::mentions(text, "information_schema.")
        && !super::mentions(text, "json")
        && !super::mentions(text, "bool_")
        && !super::mentions(text, "every")
        && !super::mentions(text, "trim")
        && !BARE.iter().any(|b| super::mentions(text, b))
    {
        return Cow::Borrowed(text);
    }
    let Ok(tokens) = lexer::tokenize(text) else {
        return Cow::Borrowed(text);
    };
    // (start, end, replacement) of each change, in order.
    let mut edits: Vec<(usize, usize, Cow<'_, str>)> = Vec::new();
    let before = |i: usize, kw: &str| i > 0 && tokens[i - 1].token.is_keyword(kw);
    for (i, t) in tokens.iter().enumerate() {
        let next = |n: usize| tokens.get(i + n).map(|t| &t.token);
        let after_dot = i > 0 && tokens[i - 1].token == Token::Punct(".");
        let qualifies = |schema: &str| {
            t.token.is_keyword(schema)
                && !after_dot
                && next(1) == Some(&Token::Punct("."))
                && matches!(next(2), Some(Token::Word(_) | Token::QuotedIdent(_)))
        };
        if let Some(trim) = standard_trim(text, &tokens, i) {
            edits.extend(trim);
        } else if qualifies("pg_catalog")
            || (qualifies("information_schema")
                && tokens[i + 2].token.is_keyword("_pg_expandarray"))
        {
            // (`_pg_expandarray`, a function, is read in select lists by set_returning.)
            edits.push((t.start, tokens[i + 1].end, Cow::Borrowed("")));
        } else if qualifies("information_schema")
            && let Some(view) = tokens[i + 2].token.identifier()
            && let Some(table) = super::catalogs::information_schema_table(&view)
        {
            edits.push((t.start, tokens[i + 2].end, Cow::Owned(table)));
        } else if let Token::Word(word) = t.token
            && !after_dot
            && !names_object(&tokens, i)
            && next(1) == Some(&Token::Punct("("))
            && let Some((_, sqlite)) = RENAMED.iter().find(|(pg, _)| word.eq_ignore_ascii_case(pg))
        {
            edits.push((t.start, t.end, Cow::Borrowed(*sqlite)));
        } else if is_bare_call(&tokens, i) && !after_dot && !before(i, "as") {
            // A column default is an expression only in parentheses.
            if before(i, "default") {
                edits.push((t.start, t.start, Cow::Borrowed("(")));
                edits.push((t.end, t.end, Cow::Borrowed("())")));
            } else {
                edits.push((t.end, t.end, Cow::Borrowed("()")));
            }
        }
    }
    // A trim's closing edit comes before those inside it.
    edits.sort_by_key(|e| e.0);
    super::edited(text, edits)
}

/// SQL's `trim([BOTH | LEADING | TRAILING] ['chars'] FROM x)` (pgJDBC's index columns) as
/// SQLite's `trim`, `ltrim` or `rtrim(x[, 'chars'])`: the edits, if `tokens[i]` starts one.
fn standard_trim<'t>(
    text: &'t str,
    tokens: &[Spanned<'t>],
    i: usize,
) -> Option<[(usize, usize, Cow<'t, str>); 2]> {
    if !tokens[i].token.is_keyword("trim") || tokens.get(i + 1)?.token != Token::Punct("(") {
        return None;
    }
    let close = super::closing(tokens, i + 1)?;
    let mut at = i + 2;
    let function = match &tokens.get(at)?.token {
        t if t.is_keyword("both") => "trim",
        t if t.is_keyword("leading") => "ltrim",
        t if t.is_keyword("trailing") => "rtrim",
        _ => "trim",
    };
    if ["both", "leading", "trailing"]
        .iter()
        .any(|k| tokens[at].token.is_keyword(k))
    {
        at += 1;
    }
    let chars = match &tokens.get(at)?.token {
        Token::Str(_) => {
            at += 1;
            Some(&text[tokens[at - 1].start..tokens[at - 1].end])
        }
        _ => None,
    };
    if at >= close || !tokens[at].token.is_keyword("from") {
        return None;
    }
    let tail = match chars {
        Some(chars) => Cow::Owned(format!(", {chars})")),
        None => Cow::Borrowed(")"),
    };
    Some([
        (
            tokens[i].start,
            tokens[at].end,
            Cow::Owned(format!("{function}(")),
        ),
        (tokens[close].start, tokens[close].end, tail),
    ])
}

/// Whether `tokens[i]` is where a statement names a table, view, index or trigger (`CREATE
/// TABLE every (…)`, `INSERT INTO every (…)`), not a call.
fn names_object(tokens: &[Spanned<'_>], i: usize) -> bool {
    i.checked_sub(1).is_some_and(|j| {
        [
            "table",
            "into",
            "from",
            "join",
            "update",
            "on",
            "references",
            "view",
            "index",
            "trigger",
            "exists",
        ]
        .iter()
        .any(|k| tokens[j].token.is_keyword(k))
    })
}

fn is_bare_call(tokens: &[Spanned<'_>], i: usize) -> bool {
    let Token::Word(word) = tokens[i].token else {
        return false;
    };
    BARE.iter().any(|b| word.eq_ignore_ascii_case(b))
        && tokens.get(i + 1).map(|t| &t.token) != Some(&Token::Punct("("))
        && tokens.get(i + 1).map(|t| &t.token) != Some(&Token::Punct("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_trim_was_a_syntax_error() {
        assert_eq!(
            rewrite("SELECT trim(both '\"' from pg_get_indexdef(1, 2, false)) AS c"),
            "SELECT trim( pg_get_indexdef(1, 2, false), '\"') AS c"
        );
        assert_eq!(rewrite("SELECT trim(leading from x)"), "SELECT ltrim( x)");
        assert_eq!(
            rewrite("SELECT trim(trailing 'x' from pg_catalog.lower(y))"),
            "SELECT rtrim( lower(y), 'x')"
        );
        assert_eq!(rewrite("SELECT trim(x)"), "SELECT trim(x)");
    }

    #[test]
    fn qualified_calls_lose_their_schema_and_bare_session_functions_gain_parentheses() {
        assert_eq!(rewrite("select pg_catalog.version()"), "select version()");
        assert_eq!(
            rewrite("SELECT current_user, Session_User, current_schema()"),
            "SELECT current_user(), Session_User(), current_schema()"
        );
        assert_eq!(
            rewrite("select pg_catalog.current_setting('a')"),
            "select current_setting('a')"
        );
        assert_eq!(
            rewrite("CREATE TABLE t (who TEXT DEFAULT current_user)"),
            "CREATE TABLE t (who TEXT DEFAULT (current_user()))"
        );
        assert_eq!(
            rewrite("select c.relname from pg_catalog.pg_class c where x::pg_catalog.text = ''"),
            "select c.relname from pg_class c where x::text = ''"
        );
        assert_eq!(
            rewrite(
                "SELECT table_name FROM information_schema.tables, INFORMATION_SCHEMA.\"columns\""
            ),
            "SELECT table_name FROM \"information_schema.tables\", \"information_schema.columns\""
        );
        assert_eq!(
            rewrite("SELECT json_build_object('a', 1), JSONB_AGG(x) FROM t"),
            "SELECT json_object('a', 1), json_group_array(x) FROM t"
        );
        assert_eq!(
            rewrite("CREATE TABLE every (a INT); INSERT INTO every (a) VALUES (1)"),
            "CREATE TABLE every (a INT); INSERT INTO every (a) VALUES (1)"
        );
        // A quoted name, a column of that name, a string and a view Cairn has not stay.
        for same in [
            "select * from information_schema.routines",
            "select \"current_user\" from t",
            "select t.current_user from t",
            "select 'current_user'",
            "select 1 AS current_user",
            "select 1",
        ] {
            assert_eq!(rewrite(same), same);
        }
    }
}
