//! The statements on users (`CREATE USER`, `ALTER USER … PASSWORD`, `DROP USER`), run on
//! the server's [`UserDirectory`]. Only an admin makes, changes and drops users; any user
//! may change their own password, as in PostgreSQL (psql's `\password`). Users of the config
//! stay as the config says.

use crate::credentials::{Origin, UserChangeError, UserDirectory};
use crate::scram::ScramVerifier;
use crate::sql::user_statement::{Password, Target, UserStatement};
use crate::sqlstate::{self, SqlError};
use crate::user_store::StoredUser;

use super::{Executed, Session};

impl Session {
    pub(super) fn run_user_statement(
        &mut self,
        statement: &UserStatement,
    ) -> Result<Executed, SqlError> {
        match statement {
            UserStatement::Refused { code, message } => Err(SqlError::new(code, message.clone())),
            UserStatement::Create {
                name,
                password,
                role,
            } => {
                self.require_admin("CREATE USER")?;
                let user = StoredUser {
                    name: name.clone(),
                    role: *role,
                    verifier: verifier_of(password)?,
                };
                self.users()?
                    .create(user, &self.user)
                    .map_err(change_error)?;
                tracing::info!(user = %name, role = role.name(), by = %self.user, "user created");
                Ok(Executed::command("CREATE ROLE", None))
            }
            UserStatement::SetPassword { name, password } => {
                let name = match name {
                    Target::Current => self.user.clone(),
                    Target::Named(name) => name.clone(),
                };
                if name != self.user {
                    self.require_database_management("ALTER USER of another user")?;
                }
                self.refuse_in_transaction("ALTER USER")?;
                self.users()?
                    .set_verifier(&name, verifier_of(password)?)
                    .map_err(change_error)?;
                tracing::info!(user = %name, by = %self.user, "user's password changed");
                Ok(Executed::command("ALTER ROLE", None))
            }
            UserStatement::Drop { names, if_exists } => {
                self.require_admin("DROP USER")?;
                let users = self.users()?;
                // All are checked before any goes, as PostgreSQL drops all or none.
                for name in names {
                    if *name == self.user {
                        return Err(SqlError::new(
                            sqlstate::OBJECT_IN_USE,
                            format!(
                                "current user cannot be dropped: log in as another admin to drop \"{name}\""
                            ),
                        ));
                    }
                    match users.origin_of(name) {
                        Some(Origin::Sql) => {}
                        Some(Origin::Config) => {
                            return Err(change_error(UserChangeError::Configured(name.clone())));
                        }
                        None if *if_exists => {}
                        None => return Err(change_error(UserChangeError::NotFound(name.clone()))),
                    }
                }
                for name in users.remove(names).map_err(change_error)? {
                    tracing::info!(user = %name, by = %self.user, "user dropped");
                    self.end_sessions_of(&name);
                }
                Ok(Executed::command("DROP ROLE", None))
            }
        }
    }

    fn users(&self) -> Result<std::sync::Arc<UserDirectory>, SqlError> {
        self.users.clone().ok_or_else(|| {
            SqlError::new(
                sqlstate::FEATURE_NOT_SUPPORTED,
                "users are made and changed from a client's session, not from a plugin's".into(),
            )
        })
    }

    /// A dropped user's sessions end, as its password would no longer let it in; DROP USER
    /// answers once they have (or after a while, saying so in the log).
    fn end_sessions_of(&self, user: &str) {
        let Some((registry, _)) = &self.seat else {
            return;
        };
        let left = registry.end_sessions_of(user, SESSIONS_END_WITHIN);
        if left > 0 {
            tracing::warn!(%user, sessions = left, "sessions of a dropped user did not end within {} s; they end at their next statement", SESSIONS_END_WITHIN.as_secs());
        }
    }
}

/// The text SHOW SESSIONS, `pg_stat_activity` and the plugins' statement feed are given of
/// a query string: one that holds a statement on users is not shown, as it may hold a
/// password (PostgreSQL shows it to superusers and logs it). Only a text that says
/// "password" somewhere is read further, so other statements pay one scan.
pub(super) fn shown_text(sql: &str) -> &str {
    let says_password = sql
        .as_bytes()
        .windows(8)
        .any(|w| w.eq_ignore_ascii_case(b"password"));
    if !says_password {
        return sql;
    }
    let holds_one = match crate::sql::lexer::split(sql) {
        Ok(statements) => statements.iter().any(|statement| {
            let words: Vec<_> = statement.tokens.iter().map(|t| &t.token).collect();
            crate::sql::user_statement::parse(&words).is_some()
        }),
        // Unreadable: not shown either, it may be one.
        Err(_) => true,
    };
    if holds_one {
        "<not shown: a statement on users, which may hold a password>"
    } else {
        sql
    }
}

/// How long DROP USER waits for the user's sessions to end.
const SESSIONS_END_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

/// The verifier a password clause gives: a SCRAM verifier as sent (psql's `\password`
/// sends one), or one made here from a password; none for `PASSWORD NULL` or no clause.
fn verifier_of(password: &Password) -> Result<Option<ScramVerifier>, SqlError> {
    let text = match password {
        Password::Unset | Password::Null => return Ok(None),
        Password::Given(text) => text,
    };
    if text.starts_with("SCRAM-SHA-256$") {
        return ScramVerifier::parse(text).map(Some).map_err(|e| {
            SqlError::new(
                sqlstate::INVALID_PARAMETER_VALUE,
                format!("the password is not a valid SCRAM-SHA-256 verifier: {e}"),
            )
        });
    }
    let md5_hash = text.len() == 35
        && text.starts_with("md5")
        && text[3..].bytes().all(|b| b.is_ascii_hexdigit());
    if md5_hash {
        return Err(SqlError::new(
            sqlstate::FEATURE_NOT_SUPPORTED,
            "MD5 password hashes are not supported: Cairn logs in with SCRAM-SHA-256 only; give the password itself, or a SCRAM-SHA-256 verifier (psql's \\password sends one when password_encryption is scram-sha-256)".into(),
        ));
    }
    if text.is_empty() {
        return Err(SqlError::new(
            sqlstate::INVALID_PARAMETER_VALUE,
            "an empty password is not allowed; PASSWORD NULL removes the password".into(),
        ));
    }
    Ok(Some(ScramVerifier::from_password(text)))
}

fn change_error(e: UserChangeError) -> SqlError {
    let code = match &e {
        UserChangeError::Exists(_) => sqlstate::DUPLICATE_OBJECT,
        UserChangeError::NotFound(_) => sqlstate::UNDEFINED_OBJECT,
        UserChangeError::Configured(_) => sqlstate::INSUFFICIENT_PRIVILEGE,
        UserChangeError::NoStore => sqlstate::FEATURE_NOT_SUPPORTED,
        UserChangeError::Store(_) => sqlstate::IO_ERROR,
    };
    SqlError::new(code, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_stayed_in_show_sessions_after_alter_user() {
        for hidden in [
            "ALTER USER a PASSWORD 'secret'",
            "  create role a login password 'secret'",
            "SELECT 1; ALTER USER a PASSWORD 'secret'",
            "/* c */ ALTER USER a PASSWORD 'secret'",
            "-- c\nCREATE USER a PASSWORD 'secret'",
            "ALTER USER a PASSWORD 'unterminated",
        ] {
            assert!(!shown_text(hidden).contains("secret"), "{hidden}");
        }
        for shown in [
            "SELECT 'password'",
            "CREATE TABLE t(password TEXT)",
            "CREATE TABLE t(x)",
            "é",
        ] {
            assert_eq!(shown_text(shown), shown);
        }
    }

    /// psql's `\password` sends a verifier: it is kept as sent, never hashed as a password.
    #[test]
    fn a_scram_verifier_sent_as_the_password_is_kept_as_sent() {
        let sent = ScramVerifier::from_password("pencil").to_string();
        let kept = verifier_of(&Password::Given(sent.clone()))
            .unwrap()
            .unwrap();
        assert_eq!(kept.to_string(), sent);
        assert_eq!(verifier_of(&Password::Null).unwrap(), None);
        let md5 = format!("md5{}", "a".repeat(32));
        assert_eq!(
            verifier_of(&Password::Given(md5)).unwrap_err().code,
            sqlstate::FEATURE_NOT_SUPPORTED
        );
    }
}
