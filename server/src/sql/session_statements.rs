//! PostgreSQL's statements about a session's own state, parsed for the server to answer:
//! `SET`, `SHOW`, `RESET` of run-time parameters, `DEALLOCATE`, `DISCARD`. (The timeouts
//! Cairn honours are parsed in `server_statement.rs` first, as `Set` and `ShowSetting`.)

use super::lexer::Token;
use super::server_statement::{Discard, ServerStatement};

/// `SET [SESSION | LOCAL] name {TO | =} value [, …] | DEFAULT`, `SET TIME ZONE value`,
/// and `SET TRANSACTION …` / `SET SESSION CHARACTERISTICS …` (SQLite's transactions are
/// serializable whatever is asked: answered, and nothing changes).
pub(super) fn set(rest: &[&Token<'_>]) -> Result<ServerStatement, String> {
    let (local, rest) = match rest {
        [scope, rest @ ..] if scope.is_keyword("local") => (true, rest),
        [scope, rest @ ..] if scope.is_keyword("session") => (false, rest),
        _ => (false, rest),
    };
    match rest {
        [first, ..] if first.is_keyword("transaction") || first.is_keyword("characteristics") => {
            return Ok(ServerStatement::SetTransaction);
        }
        [time, zone, value @ ..] if time.is_keyword("time") && zone.is_keyword("zone") => {
            let value = match value {
                [v] if v.is_keyword("local") || v.is_keyword("default") => None,
                _ => Some(values(value, "SET TIME ZONE 'UTC'")?),
            };
            return Ok(ServerStatement::SetParameter {
                name: "timezone".into(),
                value,
                local,
            });
        }
        _ => {}
    }
    let (name, rest) = name(rest).ok_or("syntax: SET [SESSION | LOCAL] name {TO | =} value")?;
    let value = match rest {
        [op, value @ ..] if op.is_keyword("to") || **op == Token::Punct("=") => value,
        _ => return Err(format!("expected TO or = after SET {name}")),
    };
    let value = match value {
        [v] if v.is_keyword("default") => None,
        _ => Some(values(value, &format!("SET {name} = 'value'"))?),
    };
    Ok(ServerStatement::SetParameter { name, value, local })
}

/// `SHOW name`, `SHOW ALL`, `SHOW TIME ZONE`, `SHOW TRANSACTION ISOLATION LEVEL`.
pub(super) fn show(rest: &[&Token<'_>]) -> Result<ServerStatement, String> {
    let name = match rest {
        [all] if all.is_keyword("all") => return Ok(ServerStatement::ShowAll),
        [time, zone] if time.is_keyword("time") && zone.is_keyword("zone") => "timezone".into(),
        [t, i, l]
            if t.is_keyword("transaction")
                && i.is_keyword("isolation")
                && l.is_keyword("level") =>
        {
            "transaction_isolation".into()
        }
        _ => match name(rest) {
            Some((name, [])) => name,
            _ => return Err("syntax: SHOW name, or SHOW ALL".into()),
        },
    };
    Ok(ServerStatement::ShowParameter { name })
}

/// `RESET name` (`RESET ALL` is parsed before).
pub(super) fn reset(rest: &[&Token<'_>]) -> Result<ServerStatement, String> {
    let name = match rest {
        [time, zone] if time.is_keyword("time") && zone.is_keyword("zone") => "timezone".into(),
        _ => match name(rest) {
            Some((name, [])) => name,
            _ => return Err("syntax: RESET name, or RESET ALL".into()),
        },
    };
    Ok(ServerStatement::SetParameter {
        name,
        value: None,
        local: false,
    })
}

/// `DEALLOCATE [PREPARE] name | ALL`.
pub(super) fn deallocate(rest: &[&Token<'_>]) -> Result<ServerStatement, String> {
    let rest = match rest {
        [prepare, rest @ ..] if prepare.is_keyword("prepare") => rest,
        _ => rest,
    };
    match rest {
        [all] if all.is_keyword("all") => Ok(ServerStatement::Deallocate { all: true }),
        [Token::Word(_) | Token::QuotedIdent(_)] => Ok(ServerStatement::Deallocate { all: false }),
        _ => Err("syntax: DEALLOCATE [PREPARE] name, or DEALLOCATE ALL".into()),
    }
}

/// `DISCARD ALL | PLANS | SEQUENCES | TEMP | TEMPORARY`.
pub(super) fn discard(rest: &[&Token<'_>]) -> Result<ServerStatement, String> {
    let what = match rest {
        [w] if w.is_keyword("all") => Discard::All,
        [w] if w.is_keyword("plans") => Discard::Plans,
        [w] if w.is_keyword("sequences") => Discard::Sequences,
        [w] if w.is_keyword("temp") || w.is_keyword("temporary") => Discard::Temp,
        _ => return Err("syntax: DISCARD ALL, PLANS, SEQUENCES or TEMP".into()),
    };
    Ok(ServerStatement::Discard(what))
}

/// A parameter's name (`a` or `a.b`, words or quoted) and what follows it.
/// `LOCK [TABLE] [ONLY] name, … [IN mode MODE] [NOWAIT]`. The modes that only keep a table
/// from being dropped or altered while a transaction reads it (ACCESS SHARE, ROW SHARE) are
/// what a transaction's SQLite snapshot gives already; the stronger ones are refused: SQLite
/// locks the whole database for writing, which `BEGIN IMMEDIATE` takes.
pub(super) fn lock(rest: &[&Token<'_>]) -> Result<ServerStatement, String> {
    let words: Vec<String> = rest
        .iter()
        .filter_map(|t| match t {
            Token::Word(w) => Some(w.to_ascii_lowercase()),
            _ => None,
        })
        .collect();
    let mode = match words.iter().position(|w| w == "in") {
        Some(at)
            if words.last().map(String::as_str) == Some("mode")
                || words.get(words.len().saturating_sub(2)).map(String::as_str) == Some("mode") =>
        {
            let end = words
                .iter()
                .rposition(|w| w == "mode")
                .unwrap_or(words.len());
            words[at + 1..end].join(" ")
        }
        Some(_) => {
            return Err("syntax error in LOCK: write LOCK TABLE name IN ACCESS SHARE MODE".into());
        }
        None => "access exclusive".to_owned(),
    };
    match mode.as_str() {
        "access share" | "row share" => Ok(ServerStatement::LockTable),
        "row exclusive"
        | "share update exclusive"
        | "share"
        | "share row exclusive"
        | "exclusive"
        | "access exclusive" => Err(format!(
            "LOCK TABLE in {} mode is not supported: SQLite locks the whole database for writing, which BEGIN IMMEDIATE takes; ACCESS SHARE and ROW SHARE are held by any transaction's snapshot",
            mode.to_uppercase()
        )),
        other => Err(format!("unrecognized lock mode \"{other}\"")),
    }
}

fn name<'t, 'a>(tokens: &'t [&'t Token<'a>]) -> Option<(String, &'t [&'t Token<'a>])> {
    let part = |t: &Token<'_>| match t {
        Token::Word(w) => Some(w.to_ascii_lowercase()),
        Token::QuotedIdent(s) => Some(s.clone()),
        _ => None,
    };
    let (first, mut rest) = tokens.split_first()?;
    let mut name = part(first)?;
    while let [dot, next, after @ ..] = rest {
        if **dot != Token::Punct(".") {
            break;
        }
        name.push('.');
        name.push_str(&part(next)?);
        rest = after;
    }
    Some((name, rest))
}

/// A value list as PostgreSQL joins it: `ISO, MDY`, `"$user", public`, `-5`, `'text'`.
fn values(tokens: &[&Token<'_>], example: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut expect_value = true;
    let mut negative = false;
    for token in tokens {
        match token {
            Token::Punct(",") if !expect_value => {
                out.push_str(", ");
                expect_value = true;
                continue;
            }
            Token::Punct("-") if expect_value && !negative => {
                negative = true;
                continue;
            }
            _ if !expect_value => {
                return Err(format!("expected a comma between values, as in {example}"));
            }
            Token::Str(s) => out.push_str(s),
            Token::Number(n) => {
                if negative {
                    out.push('-');
                }
                out.push_str(n);
            }
            Token::Word(w) => out.push_str(w),
            Token::QuotedIdent(s) => {
                out.push('"');
                out.push_str(s);
                out.push('"');
            }
            _ => return Err(format!("expected a value, as in {example}")),
        }
        negative = false;
        expect_value = false;
    }
    if expect_value {
        return Err(format!("expected a value, as in {example}"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::lexer;
    use super::super::server_statement::parse;
    use super::*;

    fn parsed(sql: &str) -> Result<ServerStatement, String> {
        parse(&lexer::tokenize(sql).unwrap()).expect("a server statement")
    }

    fn set(name: &str, value: Option<&str>, local: bool) -> ServerStatement {
        ServerStatement::SetParameter {
            name: name.into(),
            value: value.map(str::to_owned),
            local,
        }
    }

    #[test]
    fn the_session_statements_drivers_send_are_read_as_postgresql_reads_them() {
        assert_eq!(
            parsed("SET extra_float_digits = 3"),
            Ok(set("extra_float_digits", Some("3"), false))
        );
        assert_eq!(
            parsed("SET application_name TO 'my app'"),
            Ok(set("application_name", Some("my app"), false))
        );
        assert_eq!(
            parsed("set datestyle to ISO, MDY"),
            Ok(set("datestyle", Some("ISO, MDY"), false))
        );
        assert_eq!(
            parsed("SET search_path TO \"$user\", public"),
            Ok(set("search_path", Some("\"$user\", public"), false))
        );
        assert_eq!(
            parsed("SET LOCAL myapp.Tenant = -7"),
            Ok(set("myapp.tenant", Some("-7"), true))
        );
        assert_eq!(
            parsed("SET TIME ZONE 'UTC'"),
            Ok(set("timezone", Some("UTC"), false))
        );
        assert_eq!(
            parsed("SET SESSION timezone TO DEFAULT"),
            Ok(set("timezone", None, false))
        );
        assert_eq!(
            parsed("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED"),
            Ok(ServerStatement::SetTransaction)
        );
        assert_eq!(
            parsed("RESET application_name"),
            Ok(set("application_name", None, false))
        );
        assert_eq!(
            parsed("SHOW TimeZone"),
            Ok(ServerStatement::ShowParameter {
                name: "timezone".into()
            })
        );
        assert_eq!(
            parsed("show transaction isolation level"),
            Ok(ServerStatement::ShowParameter {
                name: "transaction_isolation".into()
            })
        );
        assert_eq!(parsed("SHOW ALL"), Ok(ServerStatement::ShowAll));
        assert_eq!(
            parsed("DEALLOCATE ALL"),
            Ok(ServerStatement::Deallocate { all: true })
        );
        assert_eq!(
            parsed("deallocate prepare _pg3_0"),
            Ok(ServerStatement::Deallocate { all: false })
        );
        assert_eq!(
            parsed("DISCARD ALL"),
            Ok(ServerStatement::Discard(Discard::All))
        );
        // What SQLite would read as the statement statement timeout is still the timeout's.
        assert!(matches!(
            parsed("SET statement_timeout = 5000"),
            Ok(ServerStatement::Set { .. })
        ));
        for bad in [
            "SET x",
            "SET a = ",
            "SET a = 1 2",
            "SHOW",
            "DISCARD",
            "DEALLOCATE",
        ] {
            assert!(parsed(bad).is_err(), "{bad}");
        }
    }
}
