//! PostgreSQL's statements on users: `CREATE USER`, `ALTER USER … PASSWORD`, `DROP USER`
//! (and their `ROLE` spellings). A user has one of Cairn's roles, given with `IN ROLE`;
//! PostgreSQL's other role options have no Cairn meaning and are refused by name.

use super::lexer::Token;
use crate::roles::Role;
use crate::sqlstate;

/// A statement on users.
#[derive(Debug, Clone, PartialEq)]
pub enum UserStatement {
    /// `CREATE USER name [WITH] [PASSWORD 'p'] [IN ROLE role] [LOGIN]`.
    Create {
        name: String,
        password: Password,
        role: Role,
    },
    /// `ALTER USER name [WITH] PASSWORD 'p' | NULL`.
    SetPassword { name: Target, password: Password },
    /// `DROP USER [IF EXISTS] name [, …]`.
    Drop { names: Vec<String>, if_exists: bool },
    /// Well formed, but asks for what Cairn does not have or refuses: the SQLSTATE (0A000,
    /// 42939 for a reserved name, 42704 for an unknown role) and why.
    Refused { code: &'static str, message: String },
}

/// Whose password `ALTER USER` changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Named(String),
    /// `CURRENT_USER`, `SESSION_USER`, `CURRENT_ROLE`.
    Current,
}

/// A password as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Password {
    /// No PASSWORD clause.
    Unset,
    /// `PASSWORD NULL`: no password lets the user in.
    Null,
    /// A password, or a SCRAM verifier (what psql's `\password` sends).
    Given(String),
}

const CREATE_SYNTAX: &str =
    "CREATE USER name [WITH] [PASSWORD 'password'] [IN ROLE admin | backup | readwrite | readonly]";
const ALTER_SYNTAX: &str = "ALTER USER name [WITH] PASSWORD 'password' | NULL";
const DROP_SYNTAX: &str = "DROP USER [IF EXISTS] name [, …]";

/// Recognises a statement on users from its words. `None`: not one.
pub fn parse(words: &[&Token<'_>]) -> Option<Result<UserStatement, String>> {
    let [verb, kind, rest @ ..] = words else {
        return None;
    };
    let role_word = kind.is_keyword("role");
    if !(kind.is_keyword("user") || role_word) {
        return None;
    }
    if verb.is_keyword("create") {
        Some(create(rest, role_word))
    } else if verb.is_keyword("alter") {
        Some(alter(rest))
    } else if verb.is_keyword("drop") {
        Some(drop(rest))
    } else {
        None
    }
}

fn create(rest: &[&Token<'_>], role_word: bool) -> Result<UserStatement, String> {
    let (name, rest) = name_first(rest, CREATE_SYNTAX)?;
    let mut password = Password::Unset;
    let mut role = None;
    let mut login = !role_word;
    let mut rest = skip_with(rest);
    while let [option, tail @ ..] = rest {
        rest = if let Some((given, tail)) = password_clause(rest)? {
            password = given;
            tail
        } else if option.is_keyword("in") {
            let [role_word, named, tail @ ..] = tail else {
                return Err(format!("IN takes ROLE and a role; syntax: {CREATE_SYNTAX}"));
            };
            if !role_word.is_keyword("role") {
                return Err(format!("IN takes ROLE and a role; syntax: {CREATE_SYNTAX}"));
            }
            let Some(named) = named.identifier().as_deref().and_then(Role::from_name) else {
                return Ok(UserStatement::Refused {
                    code: sqlstate::UNDEFINED_OBJECT,
                    message: format!(
                        "role {} does not exist: a Cairn user has one of the roles admin, backup, readwrite, readonly",
                        super::server_statement::describe(named)
                    ),
                });
            };
            if let [Token::Punct(","), ..] = tail {
                return Err(
                    "a Cairn user has exactly one role: IN ROLE takes one of admin, backup, readwrite, readonly"
                        .into(),
                );
            }
            if role.replace(named).is_some() {
                return Err(format!("IN ROLE is given twice; syntax: {CREATE_SYNTAX}"));
            }
            tail
        } else if option.is_keyword("login") || option.is_keyword("inherit") {
            login |= option.is_keyword("login");
            tail
        } else if option.is_keyword("superuser") {
            return Ok(unsupported(
                "SUPERUSER is written IN ROLE admin in Cairn (a user has one of the roles admin, backup, readwrite, readonly)".into(),
            ));
        } else {
            return Ok(unsupported_option(option, "CREATE"));
        };
    }
    if !login {
        return Ok(unsupported(format!(
            "a role that cannot log in (a group) has no Cairn meaning: Cairn's roles are admin, backup, readwrite and readonly, each given to a user; make a user with CREATE USER {name} PASSWORD '…' IN ROLE readonly (or CREATE ROLE {name} LOGIN …)"
        )));
    }
    if is_reserved(&name) {
        return Ok(UserStatement::Refused {
            code: sqlstate::RESERVED_NAME,
            message: format!(
                "role name \"{name}\" is reserved (PostgreSQL's names pg_…, public, current_user, session_user, current_role, none); choose another name"
            ),
        });
    }
    Ok(UserStatement::Create {
        name,
        password,
        role: role.unwrap_or(Role::Readonly),
    })
}

fn alter(rest: &[&Token<'_>]) -> Result<UserStatement, String> {
    let (name, rest) = match rest {
        [who, rest @ ..]
            if ["current_user", "session_user", "current_role"]
                .iter()
                .any(|k| who.is_keyword(k)) =>
        {
            (Target::Current, rest)
        }
        _ => {
            let (name, rest) = name_first(rest, ALTER_SYNTAX)?;
            (Target::Named(name), rest)
        }
    };
    if let [first, ..] = rest
        && (first.is_keyword("rename") || first.is_keyword("set") || first.is_keyword("reset"))
    {
        return Ok(unsupported(format!(
            "ALTER USER … {} is not supported: Cairn changes a user's password only (a user's settings and timeouts are set in its [users.NAME] of the config)",
            first_word(first)
        )));
    }
    let rest = skip_with(rest);
    match password_clause(rest)? {
        Some((password, [])) => Ok(UserStatement::SetPassword { name, password }),
        Some((_, [option @ Token::Word(_), ..])) => Ok(unsupported_option(option, "ALTER")),
        Some((_, [extra, ..])) => Err(format!(
            "unexpected {} after the password; syntax: {ALTER_SYNTAX}",
            super::server_statement::describe(extra)
        )),
        None => match rest.first() {
            None => Err(format!("missing PASSWORD; syntax: {ALTER_SYNTAX}")),
            Some(option) => Ok(unsupported_option(option, "ALTER")),
        },
    }
}

fn drop(rest: &[&Token<'_>]) -> Result<UserStatement, String> {
    let (if_exists, mut rest) = match rest {
        [a, b, rest @ ..] if a.is_keyword("if") && b.is_keyword("exists") => (true, rest),
        _ => (false, rest),
    };
    let mut names = Vec::new();
    loop {
        let (name, tail) = name_first(rest, DROP_SYNTAX)?;
        names.push(name);
        match tail {
            [] => break,
            [Token::Punct(","), tail @ ..] => rest = tail,
            [extra, ..] => {
                return Err(format!(
                    "unexpected {} after a user name; syntax: {DROP_SYNTAX}",
                    super::server_statement::describe(extra)
                ));
            }
        }
    }
    Ok(UserStatement::Drop { names, if_exists })
}

/// The user name the statement starts with, checked as config user names are.
fn name_first<'t, 'a>(
    rest: &'t [&'t Token<'a>],
    syntax: &str,
) -> Result<(String, &'t [&'t Token<'a>]), String> {
    let Some((first, rest)) = rest.split_first() else {
        return Err(format!("missing user name; syntax: {syntax}"));
    };
    let name = first.identifier().ok_or_else(|| {
        format!(
            "expected a user name, found {}; syntax: {syntax}",
            super::server_statement::describe(first)
        )
    })?;
    crate::roles::validate_user_name(&name)?;
    Ok((name, rest))
}

fn skip_with<'t, 'a>(rest: &'t [&'t Token<'a>]) -> &'t [&'t Token<'a>] {
    match rest {
        [with, rest @ ..] if with.is_keyword("with") => rest,
        _ => rest,
    }
}

/// `[ENCRYPTED] PASSWORD 'p' | NULL` at the start of `rest`, and what follows it.
fn password_clause<'t, 'a>(
    rest: &'t [&'t Token<'a>],
) -> Result<Option<(Password, &'t [&'t Token<'a>])>, String> {
    let rest = match rest {
        [encrypted, rest @ ..] if encrypted.is_keyword("encrypted") => rest,
        _ => rest,
    };
    match rest {
        [word, value, tail @ ..] if word.is_keyword("password") => match value {
            Token::Str(text) => Ok(Some((Password::Given(text.clone()), tail))),
            v if v.is_keyword("null") => Ok(Some((Password::Null, tail))),
            other => Err(format!(
                "PASSWORD takes a quoted string or NULL, found {}",
                super::server_statement::describe(other)
            )),
        },
        [word] if word.is_keyword("password") => {
            Err("PASSWORD takes a quoted string or NULL".into())
        }
        _ => Ok(None),
    }
}

/// Names PostgreSQL keeps for itself: its predefined roles (which `\\du` lists beside the
/// users) and the words that stand for a role.
fn is_reserved(name: &str) -> bool {
    name.starts_with("pg_")
        || [
            "public",
            "current_user",
            "session_user",
            "current_role",
            "none",
        ]
        .contains(&name)
}

fn unsupported(message: String) -> UserStatement {
    UserStatement::Refused {
        code: sqlstate::FEATURE_NOT_SUPPORTED,
        message,
    }
}

fn first_word(token: &Token<'_>) -> String {
    match token {
        Token::Word(w) => w.to_ascii_uppercase(),
        other => super::server_statement::describe(other),
    }
}

fn unsupported_option(option: &Token<'_>, verb: &str) -> UserStatement {
    unsupported(format!(
        "{verb} USER option {} is not supported: a Cairn user takes PASSWORD, and IN ROLE admin | backup | readwrite | readonly when made; connection limits and timeouts of a user are set in its [users.NAME] of the config",
        first_word(option)
    ))
}

#[cfg(test)]
mod tests {
    use super::super::lexer::tokenize;
    use super::*;

    fn parsed(sql: &str) -> Option<Result<UserStatement, String>> {
        let tokens = tokenize(sql).unwrap();
        let words: Vec<&Token<'_>> = tokens.iter().map(|t| &t.token).collect();
        parse(&words)
    }

    #[test]
    fn postgresql_spellings_of_users_parse() {
        assert_eq!(
            parsed("CREATE USER Alice WITH PASSWORD 'pw' IN ROLE readwrite"),
            Some(Ok(UserStatement::Create {
                name: "alice".into(),
                password: Password::Given("pw".into()),
                role: Role::Readwrite,
            }))
        );
        assert_eq!(
            parsed("create role \"bob\" login encrypted password 'x'"),
            Some(Ok(UserStatement::Create {
                name: "bob".into(),
                password: Password::Given("x".into()),
                role: Role::Readonly,
            }))
        );
        assert_eq!(
            parsed("ALTER USER \"bob\" PASSWORD 'SCRAM-SHA-256$4096:abc'"),
            Some(Ok(UserStatement::SetPassword {
                name: Target::Named("bob".into()),
                password: Password::Given("SCRAM-SHA-256$4096:abc".into()),
            }))
        );
        assert_eq!(
            parsed("alter role current_user with password null"),
            Some(Ok(UserStatement::SetPassword {
                name: Target::Current,
                password: Password::Null,
            }))
        );
        assert_eq!(
            parsed("DROP USER IF EXISTS a, b"),
            Some(Ok(UserStatement::Drop {
                names: vec!["a".into(), "b".into()],
                if_exists: true,
            }))
        );
        assert_eq!(parsed("CREATE TABLE user(x)"), None);
        assert_eq!(parsed("CREATE USERS x"), None);
    }

    #[test]
    fn what_cairn_users_cannot_be_is_refused_by_name() {
        let refusal = |sql| match parsed(sql) {
            Some(Ok(UserStatement::Refused { message, .. })) => message,
            other => panic!("{sql}: {other:?}"),
        };
        assert!(refusal("CREATE USER a CREATEDB").contains("CREATEDB"));
        assert!(refusal("CREATE USER a SUPERUSER").contains("IN ROLE admin"));
        assert!(refusal("CREATE ROLE readers").contains("cannot log in"));
        assert!(refusal("ALTER USER a RENAME TO b").contains("RENAME"));
        assert!(refusal("ALTER USER a CONNECTION LIMIT 3").contains("CONNECTION"));
        let error = |sql| parsed(sql).unwrap().unwrap_err();
        assert!(refusal("CREATE USER a IN ROLE wizard").contains("`wizard`"));
        assert!(refusal("CREATE USER pg_monitor").contains("reserved"));
        assert!(refusal("CREATE USER \"public\"").contains("reserved"));
        assert!(refusal("ALTER USER a PASSWORD 'x' VALID UNTIL 'infinity'").contains("VALID"));
        assert!(error("CREATE USER a IN readonly").contains("IN takes ROLE"));
        assert!(error("CREATE USER a IN ROLE readonly, backup").contains("exactly one"));
        assert!(error("CREATE USER 'a'").contains("expected a user name"));
        assert!(error("CREATE USER \"a/b\"").contains("invalid user name"));
        assert!(error("ALTER USER a").contains("missing PASSWORD"));
        assert!(error("ALTER USER a PASSWORD 5").contains("quoted string"));
        assert!(error("DROP USER a b").contains("`b`"));
    }
}
