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
            UserStatement::Unsupported(why) => {
                Err(SqlError::new(sqlstate::FEATURE_NOT_SUPPORTED, why.clone()))
            }
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
                for name in names {
                    if users.remove(name).map_err(change_error)? {
                        tracing::info!(user = %name, by = %self.user, "user dropped");
                        self.end_sessions_of(name);
                    }
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

/// The text SHOW SESSIONS and `pg_stat_activity` show of a statement: a statement on users
/// that may hold a password is not shown (PostgreSQL shows it to superusers). A CREATE or
/// ALTER of anything that mentions a password is hidden too: a cheap test, on every statement.
pub(super) fn shown_text(sql: &str) -> &str {
    let head = sql.trim_start().as_bytes();
    let starts = |word: &str| {
        head.get(..word.len())
            .is_some_and(|h| h.eq_ignore_ascii_case(word.as_bytes()))
    };
    let may_hold_a_password = (starts("create") || starts("alter"))
        && sql
            .as_bytes()
            .windows(8)
            .any(|w| w.eq_ignore_ascii_case(b"password"));
    if may_hold_a_password {
        "<not shown: a CREATE or ALTER that may hold a password>"
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
        assert!(!shown_text("ALTER USER a PASSWORD 'secret'").contains("secret"));
        assert!(!shown_text("  create role a login password 'secret'").contains("secret"));
        assert_eq!(shown_text("SELECT 'password'"), "SELECT 'password'");
        assert_eq!(shown_text("CREATE TABLE t(x)"), "CREATE TABLE t(x)");
        assert_eq!(shown_text("é"), "é");
    }
}
