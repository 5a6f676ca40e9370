//! The server's own statements. Everything that is not one of these goes to SQLite unchanged.

use super::lexer::{Spanned, Token};

/// A statement the server executes itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerStatement {
    CreateDatabase { name: String },
    DropDatabase { name: String, if_exists: bool },
    ShowDatabases,
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
        _ => None,
    }
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
