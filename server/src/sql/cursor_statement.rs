//! PostgreSQL's SQL-level cursors: `DECLARE name CURSOR [WITH | WITHOUT HOLD] FOR query`,
//! `FETCH [FORWARD] [n | ALL | NEXT] [FROM | IN] name`, `MOVE …` and `CLOSE name` (what
//! psycopg's named cursors, Django's `.iterator()` and SQLAlchemy's `stream_results`
//! send). Only forward: a cursor is read once, from its first row to its last.

use super::lexer::{Spanned, Token};

/// A statement on cursors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CursorStatement {
    /// `DECLARE`: the query starts at byte `query_at` of the statement's text (which starts
    /// at its first token).
    Declare {
        name: String,
        hold: bool,
        query_at: usize,
    },
    /// `FETCH` (rows to the client) or `MOVE` (rows skipped, counted).
    Fetch {
        name: String,
        count: Count,
        moving: bool,
    },
    Close {
        name: String,
    },
    /// Well formed, but not what a forward-only cursor does: why, for a 0A000.
    Unsupported(String),
}

/// How many rows a FETCH or MOVE takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    Rows(u64),
    All,
}

const DECLARE_SYNTAX: &str = "DECLARE name [NO SCROLL] CURSOR [WITH HOLD | WITHOUT HOLD] FOR query";
const FETCH_SYNTAX: &str = "FETCH [FORWARD] [count | ALL | NEXT] [FROM | IN] name";

/// Recognises a statement on cursors. `None`: not one.
pub fn parse(tokens: &[Spanned<'_>]) -> Option<Result<CursorStatement, String>> {
    let first = &tokens.first()?.token;
    if first.is_keyword("declare") {
        Some(declare(tokens))
    } else if first.is_keyword("fetch") || first.is_keyword("move") {
        Some(fetch(&tokens[1..], first.is_keyword("move")))
    } else if first.is_keyword("close") {
        match &tokens[1..] {
            [all] if all.token.is_keyword("all") => None,
            [name] => Some(
                name.token
                    .identifier()
                    .map(|name| CursorStatement::Close { name })
                    .ok_or_else(|| "syntax: CLOSE name | ALL".to_owned()),
            ),
            _ => Some(Err("syntax: CLOSE name | ALL".into())),
        }
    } else {
        None
    }
}

fn declare(tokens: &[Spanned<'_>]) -> Result<CursorStatement, String> {
    let name = tokens
        .get(1)
        .and_then(|t| t.token.identifier())
        .ok_or_else(|| format!("expected a cursor name; syntax: {DECLARE_SYNTAX}"))?;
    let mut hold = false;
    let mut at = 2;
    let word = |at: usize, kw: &str| tokens.get(at).is_some_and(|t| t.token.is_keyword(kw));
    loop {
        if word(at, "binary") {
            return Ok(CursorStatement::Unsupported(
                "BINARY cursors are not supported: fetch rows in the text format, or through the extended protocol in binary".into(),
            ));
        }
        if word(at, "scroll") {
            return Ok(CursorStatement::Unsupported(
                "SCROLL cursors are not supported: Cairn's cursors read forward only (declare it NO SCROLL, or leave it out)".into(),
            ));
        }
        if word(at, "insensitive") || word(at, "asensitive") {
            at += 1;
        } else if word(at, "no") && word(at + 1, "scroll") {
            at += 2;
        } else {
            break;
        }
    }
    if !word(at, "cursor") {
        return Err(format!("expected CURSOR; syntax: {DECLARE_SYNTAX}"));
    }
    at += 1;
    if (word(at, "with") || word(at, "without")) && word(at + 1, "hold") {
        hold = word(at, "with");
        at += 2;
    }
    if !word(at, "for") {
        return Err(format!(
            "expected FOR and a query; syntax: {DECLARE_SYNTAX}"
        ));
    }
    let query_at = tokens
        .get(at + 1)
        .map(|t| t.start - tokens[0].start)
        .ok_or_else(|| format!("missing the query after FOR; syntax: {DECLARE_SYNTAX}"))?;
    Ok(CursorStatement::Declare {
        name,
        hold,
        query_at,
    })
}

fn fetch(rest: &[Spanned<'_>], moving: bool) -> Result<CursorStatement, String> {
    let words: Vec<&Token<'_>> = rest.iter().map(|t| &t.token).collect();
    let (count, rest) = match words.as_slice() {
        [forward, Token::Number(n), rest @ ..] if forward.is_keyword("forward") => {
            (Some(number(n)?), rest)
        }
        [forward, all, rest @ ..] if forward.is_keyword("forward") && all.is_keyword("all") => {
            (Some(Count::All), rest)
        }
        [forward, rest @ ..] if forward.is_keyword("forward") => (Some(Count::Rows(1)), rest),
        [Token::Number(n), rest @ ..] => (Some(number(n)?), rest),
        [all, rest @ ..] if all.is_keyword("all") => (Some(Count::All), rest),
        [next, rest @ ..] if next.is_keyword("next") => (Some(Count::Rows(1)), rest),
        [direction, ..]
            if ["backward", "prior", "first", "last", "absolute", "relative"]
                .iter()
                .any(|k| direction.is_keyword(k)) =>
        {
            return Ok(CursorStatement::Unsupported(format!(
                "FETCH {} is not supported: Cairn's cursors read forward only (FETCH [FORWARD] count | ALL)",
                direction_word(direction)
            )));
        }
        rest => (None, rest),
    };
    let rest = match rest {
        [from, rest @ ..] if from.is_keyword("from") || from.is_keyword("in") => rest,
        rest => rest,
    };
    match rest {
        [name] => name
            .identifier()
            .map(|name| CursorStatement::Fetch {
                name,
                count: count.unwrap_or(Count::Rows(1)),
                moving,
            })
            .ok_or_else(|| format!("expected a cursor name; syntax: {FETCH_SYNTAX}")),
        _ => Err(format!("syntax: {FETCH_SYNTAX}")),
    }
}

fn number(text: &str) -> Result<Count, String> {
    text.parse()
        .map(Count::Rows)
        .map_err(|_| format!("a FETCH count is a whole number of rows, got {text}"))
}

fn direction_word(token: &Token<'_>) -> String {
    match token {
        Token::Word(w) => w.to_ascii_uppercase(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::lexer::tokenize;
    use super::*;

    fn parsed(sql: &str) -> Option<Result<CursorStatement, String>> {
        parse(&tokenize(sql).unwrap())
    }

    #[test]
    fn the_cursor_statements_drivers_send_parse() {
        let sql = "DECLARE \"c_1\" NO SCROLL CURSOR WITHOUT HOLD FOR SELECT * FROM t";
        assert_eq!(
            parsed(sql),
            Some(Ok(CursorStatement::Declare {
                name: "c_1".into(),
                hold: false,
                query_at: sql.find("SELECT").unwrap(),
            }))
        );
        assert!(matches!(
            parsed("declare c cursor with hold for select 1"),
            Some(Ok(CursorStatement::Declare { hold: true, .. }))
        ));
        let fetch = |sql| match parsed(sql) {
            Some(Ok(CursorStatement::Fetch {
                name,
                count,
                moving,
            })) => (name, count, moving),
            other => panic!("{sql}: {other:?}"),
        };
        assert_eq!(
            fetch("FETCH FORWARD 2000 FROM \"c_1\""),
            ("c_1".into(), Count::Rows(2000), false)
        );
        assert_eq!(fetch("fetch all in c"), ("c".into(), Count::All, false));
        assert_eq!(fetch("FETCH c"), ("c".into(), Count::Rows(1), false));
        assert_eq!(
            fetch("FETCH NEXT FROM c"),
            ("c".into(), Count::Rows(1), false)
        );
        assert_eq!(
            fetch("MOVE FORWARD ALL FROM c"),
            ("c".into(), Count::All, true)
        );
        assert_eq!(
            parsed("CLOSE \"c_1\""),
            Some(Ok(CursorStatement::Close { name: "c_1".into() }))
        );
        assert_eq!(parsed("CLOSE ALL"), None);
        assert_eq!(parsed("SELECT 1"), None);
    }

    #[test]
    fn what_a_forward_cursor_cannot_do_is_refused_by_name() {
        for (sql, named) in [
            ("FETCH BACKWARD 1 FROM c", "BACKWARD"),
            ("FETCH PRIOR FROM c", "PRIOR"),
            ("DECLARE c SCROLL CURSOR FOR SELECT 1", "SCROLL"),
            ("DECLARE c BINARY CURSOR FOR SELECT 1", "BINARY"),
        ] {
            match parsed(sql) {
                Some(Ok(CursorStatement::Unsupported(why))) => {
                    assert!(why.contains(named), "{why}")
                }
                other => panic!("{sql}: {other:?}"),
            }
        }
        assert!(parsed("DECLARE c CURSOR").unwrap().is_err());
        assert!(parsed("FETCH 10 FROM").unwrap().is_err());
        assert!(parsed("FETCH -1 FROM c").unwrap().is_err());
    }
}
