//! PostgreSQL spellings of function calls that SQLite cannot read: a call qualified by its
//! schema (`pg_catalog.version()`, which SQLAlchemy sends) loses the qualifier, and the SQL
//! standard's session functions written without parentheses (`current_user`,
//! `session_user`, `current_role`, `current_schema`, `current_catalog`) get them, so that
//! they reach the functions the session defines.

use std::borrow::Cow;

use crate::sql::lexer::{self, Spanned, Token};

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
    if !super::mentions(text, "pg_catalog.") && !BARE.iter().any(|b| super::mentions(text, b)) {
        return Cow::Borrowed(text);
    }
    let Ok(tokens) = lexer::tokenize(text) else {
        return Cow::Borrowed(text);
    };
    // (start, end, replacement) of each change, in order.
    let mut edits: Vec<(usize, usize, &str)> = Vec::new();
    let before = |i: usize, kw: &str| i > 0 && tokens[i - 1].token.is_keyword(kw);
    for (i, t) in tokens.iter().enumerate() {
        let next = |n: usize| tokens.get(i + n).map(|t| &t.token);
        let after_dot = i > 0 && tokens[i - 1].token == Token::Punct(".");
        if t.token.is_keyword("pg_catalog")
            && !after_dot
            && next(1) == Some(&Token::Punct("."))
            && matches!(next(2), Some(Token::Word(_)))
            && next(3) == Some(&Token::Punct("("))
        {
            edits.push((t.start, tokens[i + 1].end, ""));
        } else if is_bare_call(&tokens, i) && !after_dot && !before(i, "as") {
            // A column default is an expression only in parentheses.
            if before(i, "default") {
                edits.push((t.start, t.start, "("));
                edits.push((t.end, t.end, "())"));
            } else {
                edits.push((t.end, t.end, "()"));
            }
        }
    }
    super::edited(text, edits)
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
        // A table of pg_catalog, a quoted name, a column of that name and a string stay.
        for same in [
            "select * from pg_catalog.pg_type",
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
