//! PostgreSQL operators and literals SQLite spells differently, as psql and ORMs write them
//! in their catalog queries: the regular expression matches `~`, `!~`, `~*`, `!~*` (SQLite's
//! `REGEXP`, which the session defines), LIKE's `~~` and `!~~`, an operator written as
//! `OPERATOR(pg_catalog.~)`, the collations PostgreSQL calls `default`, `C` and `POSIX`
//! (SQLite's own binary comparison), and escape strings `E'…'` outside a cast.

use std::borrow::Cow;

use crate::sql::lexer::{self, Spanned, Token};

/// `text` with those spellings rewritten; borrowed when there are none (or the text does
/// not tokenize, which SQLite then reports).
pub fn rewrite(text: &str) -> Cow<'_, str> {
    if !text.contains('~')
        && !super::mentions(text, "collate")
        && !super::mentions_word(text, "operator")
        && !has_e_string(text)
    {
        return Cow::Borrowed(text);
    }
    let Ok(tokens) = lexer::tokenize(text) else {
        return Cow::Borrowed(text);
    };
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let t = &tokens[i];
        // OPERATOR(schema.op): the operator itself, read again below.
        if t.token.is_keyword("operator")
            && let Some((close, op)) = qualified_operator(text, &tokens, i)
        {
            match regex_operator(&op) {
                Some(sqlite) => edits.push((t.start, tokens[close].end, format!(" {sqlite} "))),
                None => edits.push((t.start, tokens[close].end, format!(" {op} "))),
            }
            i = close + 1;
            continue;
        }
        if t.token == Token::Punct("~") || t.token == Token::Punct("!") {
            // The operator's characters, written together.
            let mut last = i;
            while tokens.get(last + 1).is_some_and(|n| {
                n.start == tokens[last].end && matches!(n.token, Token::Punct("~" | "*" | "!"))
            }) {
                last += 1;
            }
            let op = &text[t.start..tokens[last].end];
            if let Some(sqlite) = regex_operator(op)
                && follows_operand(&tokens, i)
            {
                edits.push((t.start, tokens[last].end, format!(" {sqlite} ")));
                i = last + 1;
                continue;
            }
        }
        if t.token.is_keyword("collate")
            && let Some(last) = builtin_collation(&tokens, i + 1)
        {
            edits.push((t.start, tokens[last].end, String::new()));
            i = last + 1;
            continue;
        }
        if let Token::Word(w) = t.token
            && w.eq_ignore_ascii_case("e")
            && let Some(Spanned {
                token: Token::Str(value),
                start,
                end,
            }) = tokens.get(i + 1)
            && *start == t.end
            && let Some(plain) = super::casts::unescape(value)
        {
            edits.push((t.start, *end, super::casts::quote(&plain)));
            i += 2;
            continue;
        }
        i += 1;
    }
    super::edited(text, edits)
}

/// Whether `text` may hold an escape string: an `E'` not ending a longer word.
fn has_e_string(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.windows(2).enumerate().any(|(i, w)| {
        (w == b"E'" || w == b"e'")
            && (i == 0
                || !(bytes[i - 1].is_ascii_alphanumeric()
                    || bytes[i - 1] == b'_'
                    || bytes[i - 1] == b'\''))
    })
}

/// SQLite's spelling of a PostgreSQL pattern-matching operator (the right operand of
/// `~*` gains `(?i)` through the concatenation that follows it).
fn regex_operator(op: &str) -> Option<&'static str> {
    Some(match op {
        "~" => "REGEXP",
        "!~" => "NOT REGEXP",
        "~*" => "REGEXP '(?i)' ||",
        "!~*" => "NOT REGEXP '(?i)' ||",
        // SQLite's LIKE ignores the case of ASCII letters, as `~~*` does (`~~` does not).
        "~~" | "~~*" => "LIKE",
        "!~~" | "!~~*" => "NOT LIKE",
        _ => return None,
    })
}

/// `OPERATOR ( [schema .] op )` starting at `tokens[at]`: the index of its `)` and the
/// operator's text.
fn qualified_operator(text: &str, tokens: &[Spanned<'_>], at: usize) -> Option<(usize, String)> {
    if tokens.get(at + 1)?.token != Token::Punct("(") {
        return None;
    }
    let mut first = at + 2;
    if matches!(tokens.get(first)?.token, Token::Word(_))
        && tokens.get(first + 1)?.token == Token::Punct(".")
    {
        first += 2;
    }
    let close = (first..tokens.len()).find(|&j| tokens[j].token == Token::Punct(")"))?;
    if close == first
        || !tokens[first..close]
            .iter()
            .all(|t| matches!(t.token, Token::Punct(_)))
    {
        return None;
    }
    Some((
        close,
        text[tokens[first].start..tokens[close - 1].end].to_owned(),
    ))
}

/// Whether the token before `at` ends an operand, so that `~` there is the binary match
/// rather than SQLite's bitwise NOT of what follows.
fn follows_operand(tokens: &[Spanned<'_>], at: usize) -> bool {
    let Some(before) = at.checked_sub(1).map(|j| &tokens[j].token) else {
        return false;
    };
    match before {
        Token::Punct(p) => *p == ")",
        Token::Word(w) => !super::is_sql_keyword(w),
        _ => true,
    }
}

/// The last token of a collation SQLite compares with anyway (PostgreSQL's `default`, `C`,
/// `POSIX`, perhaps qualified by `pg_catalog`) starting at `tokens[at]`.
fn builtin_collation(tokens: &[Spanned<'_>], mut at: usize) -> Option<usize> {
    if tokens.get(at)?.token.is_keyword("pg_catalog")
        && tokens.get(at + 1)?.token == Token::Punct(".")
    {
        at += 2;
    }
    let name = tokens.get(at)?.token.identifier()?;
    matches!(name.as_str(), "default" | "C" | "c" | "POSIX" | "posix").then_some(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psqls_pattern_operators_become_sqlites() {
        assert_eq!(
            rewrite("WHERE n.nspname !~ '^pg_toast' AND c.relname ~ '^t$'"),
            "WHERE n.nspname  NOT REGEXP  '^pg_toast' AND c.relname  REGEXP  '^t$'"
        );
        assert_eq!(
            rewrite("WHERE c.relname OPERATOR(pg_catalog.~) '^(t)$' COLLATE pg_catalog.default"),
            "WHERE c.relname  REGEXP  '^(t)$' "
        );
        assert_eq!(
            rewrite("SELECT name ~* 'ab' FROM t"),
            "SELECT name  REGEXP '(?i)' ||  'ab' FROM t"
        );
        assert_eq!(rewrite("SELECT a ~~ 'x%'"), "SELECT a  LIKE  'x%'");
        assert_eq!(rewrite("SELECT a ~~* 'x%'"), "SELECT a  LIKE  'x%'");
        assert_eq!(
            rewrite("SELECT a OPERATOR(pg_catalog.=) 1"),
            "SELECT a  =  1"
        );
        assert_eq!(rewrite("SELECT name ~$1"), "SELECT name  REGEXP $1");
        // SQLite's own bitwise NOT stays, after any keyword.
        assert_eq!(rewrite("SELECT ~5, (~x)"), "SELECT ~5, (~x)");
        for same in [
            "SELECT DISTINCT ~5",
            "SELECT 1 IS NOT DISTINCT FROM ~5",
            "SELECT 3 BETWEEN ~5 AND 5",
            "SELECT 1 IS ~5",
            "SELECT 'a' LIKE ~1",
            "SELECT 1 LIMIT ~-2",
            "SELECT 'there', 'e''s'",
        ] {
            assert_eq!(rewrite(same), same);
        }
        assert_eq!(rewrite("SELECT 1 WHERE x != 2"), "SELECT 1 WHERE x != 2");
    }

    #[test]
    fn builtin_collations_and_escape_strings() {
        assert_eq!(
            rewrite("ORDER BY name COLLATE \"C\", b COLLATE nocase"),
            "ORDER BY name , b COLLATE nocase"
        );
        assert_eq!(
            rewrite("SELECT array_to_string(x, E'\\n'), e'it''s'"),
            "SELECT array_to_string(x, '\n'), 'it''s'"
        );
        assert_eq!(rewrite("SELECT 'E''s'"), "SELECT 'E''s'");
    }
}
