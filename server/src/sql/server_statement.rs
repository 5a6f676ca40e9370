//! The server's own statements. Everything that is not one of these goes to SQLite unchanged.

use super::lexer::{Spanned, Token};

/// A statement the server executes itself.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerStatement {
    CreateDatabase { name: String },
    DropDatabase { name: String, if_exists: bool },
    ShowDatabases,
    ShowPlugins,
    LoadPlugin { file: String },
    UnloadPlugin { name: String },
    ReloadPlugin { name: String },
    Call(Call),
}

/// `CALL plugin.procedure(args…)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub plugin: String,
    pub procedure: String,
    /// Positional arguments have no name; `name => value` ones do.
    pub args: Vec<(Option<String>, Literal)>,
}

/// A literal argument of `CALL`.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
}

/// Recognises a server statement. `None`: not ours, hand it to SQLite. `Some(Err)`: it starts
/// like one of ours but is malformed; the message says what was expected.
pub fn parse(tokens: &[Spanned<'_>]) -> Option<Result<ServerStatement, String>> {
    let words: Vec<&Token<'_>> = tokens.iter().map(|t| &t.token).collect();
    match words.as_slice() {
        [first, second, rest @ ..]
            if first.is_keyword("create") && second.is_keyword("database") =>
        {
            Some(
                database_name(rest, "CREATE DATABASE name")
                    .map(|name| ServerStatement::CreateDatabase { name }),
            )
        }
        [first, second, rest @ ..] if first.is_keyword("drop") && second.is_keyword("database") => {
            let (if_exists, rest) = match rest {
                [a, b, rest @ ..] if a.is_keyword("if") && b.is_keyword("exists") => (true, rest),
                _ => (false, rest),
            };
            Some(
                database_name(rest, "DROP DATABASE [IF EXISTS] name")
                    .map(|name| ServerStatement::DropDatabase { name, if_exists }),
            )
        }
        [first, second, rest @ ..]
            if first.is_keyword("show") && second.is_keyword("databases") =>
        {
            Some(match rest {
                [] => Ok(ServerStatement::ShowDatabases),
                [extra, ..] => Err(format!(
                    "unexpected {} after SHOW DATABASES",
                    describe(extra)
                )),
            })
        }
        [first, second, rest @ ..] if first.is_keyword("show") && second.is_keyword("plugins") => {
            Some(match rest {
                [] => Ok(ServerStatement::ShowPlugins),
                [extra, ..] => Err(format!("unexpected {} after SHOW PLUGINS", describe(extra))),
            })
        }
        [first, second, rest @ ..] if first.is_keyword("load") && second.is_keyword("plugin") => {
            Some(match rest {
                [Token::Str(file)] => Ok(ServerStatement::LoadPlugin { file: file.clone() }),
                _ => Err("syntax: LOAD PLUGIN 'library file name in the plugin directory'".into()),
            })
        }
        [first, second, rest @ ..] if first.is_keyword("unload") && second.is_keyword("plugin") => {
            Some(
                plugin_name(rest, "UNLOAD PLUGIN name")
                    .map(|name| ServerStatement::UnloadPlugin { name }),
            )
        }
        [first, second, rest @ ..] if first.is_keyword("reload") && second.is_keyword("plugin") => {
            Some(
                plugin_name(rest, "RELOAD PLUGIN name")
                    .map(|name| ServerStatement::ReloadPlugin { name }),
            )
        }
        [first, rest @ ..] if first.is_keyword("call") => {
            Some(call(rest).map(ServerStatement::Call))
        }
        _ => None,
    }
}

fn plugin_name(rest: &[&Token<'_>], syntax: &str) -> Result<String, String> {
    match rest {
        [name] => name.identifier().ok_or_else(|| {
            format!(
                "expected a plugin name, found {}; syntax: {syntax}",
                describe(name)
            )
        }),
        [] => Err(format!("missing plugin name; syntax: {syntax}")),
        [_, extra, ..] => Err(format!(
            "unexpected {} after the plugin name; syntax: {syntax}",
            describe(extra)
        )),
    }
}

const CALL_SYNTAX: &str = "CALL plugin.procedure(arg, …, name => arg); arguments are literals";

fn call(rest: &[&Token<'_>]) -> Result<Call, String> {
    let (plugin, procedure, rest) = match rest {
        [plugin, Token::Punct("."), procedure, rest @ ..] => {
            (plugin.identifier(), procedure.identifier(), rest)
        }
        _ => {
            return Err(format!(
                "expected plugin.procedure after CALL; syntax: {CALL_SYNTAX}"
            ));
        }
    };
    let (Some(plugin), Some(procedure)) = (plugin, procedure) else {
        return Err(format!(
            "expected plugin.procedure after CALL; syntax: {CALL_SYNTAX}"
        ));
    };
    let inner = match rest {
        [Token::Punct("("), inner @ .., Token::Punct(")")] => inner,
        [] => &[][..],
        _ => {
            return Err(format!(
                "expected (arguments) after {plugin}.{procedure}; syntax: {CALL_SYNTAX}"
            ));
        }
    };
    let mut args = Vec::new();
    for arg in inner.split(|t| **t == Token::Punct(",")) {
        if arg.is_empty() && inner.is_empty() {
            break;
        }
        let (name, value) = match arg {
            [name, Token::Punct("=>"), value @ ..] => {
                let name = name.identifier().ok_or_else(|| {
                    format!(
                        "expected an argument name before =>, found {}",
                        describe(name)
                    )
                })?;
                (Some(name), value)
            }
            value => (None, value),
        };
        args.push((name, literal(value)?));
    }
    Ok(Call {
        plugin,
        procedure,
        args,
    })
}

fn literal(tokens: &[&Token<'_>]) -> Result<Literal, String> {
    let (negative, tokens) = match tokens {
        [Token::Punct("-"), rest @ ..] => (true, rest),
        _ => (false, tokens),
    };
    let value = match tokens {
        [Token::Str(s)] if !negative => Literal::Text(s.clone()),
        [w] if !negative && w.is_keyword("null") => Literal::Null,
        [w] if !negative && w.is_keyword("true") => Literal::Integer(1),
        [w] if !negative && w.is_keyword("false") => Literal::Integer(0),
        [Token::Number(n)] => {
            let text = if negative {
                format!("-{n}")
            } else {
                (*n).to_owned()
            };
            match text.parse::<i64>() {
                Ok(i) => Literal::Integer(i),
                Err(_) => Literal::Real(
                    text.parse::<f64>()
                        .map_err(|_| format!("`{text}` is not a number"))?,
                ),
            }
        }
        [] => return Err(format!("missing argument; syntax: {CALL_SYNTAX}")),
        [first, ..] => {
            return Err(format!(
                "arguments of CALL must be literals (numbers, 'text', NULL, TRUE, FALSE), found {}",
                describe(first)
            ));
        }
    };
    Ok(value)
}

fn database_name(rest: &[&Token<'_>], syntax: &str) -> Result<String, String> {
    match rest {
        [name] => name.identifier().ok_or_else(|| {
            format!(
                "expected a database name, found {}; syntax: {syntax}",
                describe(name)
            )
        }),
        [] => Err(format!("missing database name; syntax: {syntax}")),
        [_, extra, ..] => Err(format!(
            "unexpected {} after the database name; syntax: {syntax}",
            describe(extra)
        )),
    }
}

fn describe(token: &Token<'_>) -> String {
    match token {
        Token::Word(w) | Token::Number(w) | Token::Punct(w) | Token::SqliteParam(w) => {
            format!("`{w}`")
        }
        Token::QuotedIdent(s) => format!("\"{s}\""),
        Token::Str(s) => format!("'{s}'"),
        Token::Param(n) => format!("${n}"),
    }
}

#[cfg(test)]
mod tests {
    use super::super::lexer::tokenize;
    use super::*;

    fn parse_text(sql: &str) -> Option<Result<ServerStatement, String>> {
        parse(&tokenize(sql).unwrap())
    }

    #[test]
    fn recognises_the_database_statements() {
        assert_eq!(
            parse_text("create database Sales"),
            Some(Ok(ServerStatement::CreateDatabase {
                name: "sales".into()
            }))
        );
        assert_eq!(
            parse_text("DROP DATABASE IF EXISTS \"x\""),
            Some(Ok(ServerStatement::DropDatabase {
                name: "x".into(),
                if_exists: true
            }))
        );
        assert_eq!(
            parse_text("SHOW DATABASES"),
            Some(Ok(ServerStatement::ShowDatabases))
        );
    }

    #[test]
    fn recognises_the_plugin_statements() {
        assert_eq!(
            parse_text("show plugins"),
            Some(Ok(ServerStatement::ShowPlugins))
        );
        assert_eq!(
            parse_text("LOAD PLUGIN 'libx.so'"),
            Some(Ok(ServerStatement::LoadPlugin {
                file: "libx.so".into()
            }))
        );
        assert_eq!(
            parse_text("reload plugin Hello"),
            Some(Ok(ServerStatement::ReloadPlugin {
                name: "hello".into()
            }))
        );
        assert_eq!(
            parse_text("CALL hello.greet('ann', -3, 2.5, null, dry_run => true)"),
            Some(Ok(ServerStatement::Call(Call {
                plugin: "hello".into(),
                procedure: "greet".into(),
                args: vec![
                    (None, Literal::Text("ann".into())),
                    (None, Literal::Integer(-3)),
                    (None, Literal::Real(2.5)),
                    (None, Literal::Null),
                    (Some("dry_run".into()), Literal::Integer(1)),
                ],
            })))
        );
        assert_eq!(
            parse_text("call a.b()"),
            Some(Ok(ServerStatement::Call(Call {
                plugin: "a".into(),
                procedure: "b".into(),
                args: vec![],
            })))
        );
        let err = parse_text("CALL a.b(x + 1)").unwrap().unwrap_err();
        assert!(err.contains("must be literals"), "{err}");
        let err = parse_text("CALL greet()").unwrap().unwrap_err();
        assert!(err.contains("plugin.procedure"), "{err}");
    }

    #[test]
    fn leaves_sqlite_statements_alone() {
        assert_eq!(parse_text("CREATE TABLE database(x)"), None);
        assert_eq!(parse_text("SELECT 1"), None);
    }

    #[test]
    fn malformed_statements_say_what_was_expected() {
        let err = parse_text("CREATE DATABASE").unwrap().unwrap_err();
        assert!(err.contains("missing database name"), "{err}");
        let err = parse_text("DROP DATABASE a b").unwrap().unwrap_err();
        assert!(err.contains("unexpected `b`"), "{err}");
        let err = parse_text("CREATE DATABASE 'x'").unwrap().unwrap_err();
        assert!(err.contains("expected a database name"), "{err}");
    }
}
