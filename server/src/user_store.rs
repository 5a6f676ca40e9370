//! The users made in SQL (`CREATE USER`), kept in `<data_dir>/system/users.sqlite` so that
//! they survive restarts. Only a user's name, role and SCRAM verifier are stored: never a
//! password, nor anything a client could log in with.

use std::path::{Path, PathBuf};

use rusqlite::Connection;

use crate::roles::Role;
use crate::scram::ScramVerifier;

const CREATE: &str = "
CREATE TABLE IF NOT EXISTS users (
    name       TEXT PRIMARY KEY,
    role       TEXT NOT NULL,
    verifier   TEXT,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL
);
";

/// The store could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum UserStoreError {
    #[error("the user store: {0}")]
    Open(#[from] crate::system_db::SystemDbError),
    #[error("the user store {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("the user store {path} holds user {name:?} with {what}; fix or delete that row")]
    Corrupt {
        path: PathBuf,
        name: String,
        what: String,
    },
}

/// One user as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredUser {
    pub name: String,
    pub role: Role,
    /// `None`: made without a password, so no login succeeds (PostgreSQL's `PASSWORD NULL`).
    pub verifier: Option<ScramVerifier>,
}

/// The open store.
#[derive(Debug)]
pub struct UserStore {
    conn: Connection,
    path: PathBuf,
}

impl UserStore {
    /// Opens (or creates) the store under `data_dir`.
    pub fn open(data_dir: &Path) -> Result<UserStore, UserStoreError> {
        let (conn, path) = crate::system_db::open(data_dir, "users.sqlite", CREATE)?;
        Ok(UserStore { conn, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sqlite(&self, source: rusqlite::Error) -> UserStoreError {
        UserStoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Every stored user.
    pub fn load(&self) -> Result<Vec<StoredUser>, UserStoreError> {
        let rows: Vec<(String, String, Option<String>)> = self
            .conn
            .prepare("SELECT name, role, verifier FROM users ORDER BY name")
            .and_then(|mut stmt| {
                stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect()
            })
            .map_err(|e| self.sqlite(e))?;
        rows.into_iter()
            .map(|(name, role, verifier)| {
                let corrupt = |what: String| UserStoreError::Corrupt {
                    path: self.path.clone(),
                    name: name.clone(),
                    what,
                };
                let role = Role::from_name(&role)
                    .ok_or_else(|| corrupt(format!("an unknown role {role:?}")))?;
                let verifier = verifier
                    .map(|v| ScramVerifier::parse(&v))
                    .transpose()
                    .map_err(|e| corrupt(format!("an unreadable verifier ({e})")))?;
                Ok(StoredUser {
                    name,
                    role,
                    verifier,
                })
            })
            .collect()
    }

    /// Adds `user`, made by `by`; `Ok(false)` if a user of that name is stored already.
    pub fn insert(&self, user: &StoredUser, by: &str) -> Result<bool, UserStoreError> {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        self.conn
            .execute(
                "INSERT INTO users(name, role, verifier, created_at, created_by) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(name) DO NOTHING",
                rusqlite::params![
                    user.name,
                    user.role.name(),
                    user.verifier.as_ref().map(ToString::to_string),
                    now,
                    by
                ],
            )
            .map(|changed| changed == 1)
            .map_err(|e| self.sqlite(e))
    }

    /// Replaces the verifier of `name`; `Ok(false)` if no such user is stored.
    pub fn set_verifier(
        &self,
        name: &str,
        verifier: Option<&ScramVerifier>,
    ) -> Result<bool, UserStoreError> {
        self.conn
            .execute(
                "UPDATE users SET verifier = ?2 WHERE name = ?1",
                rusqlite::params![name, verifier.map(ToString::to_string)],
            )
            .map(|changed| changed == 1)
            .map_err(|e| self.sqlite(e))
    }

    /// Removes the users `names`, in one transaction: the ones that were stored.
    pub fn delete(&self, names: &[String]) -> Result<Vec<String>, UserStoreError> {
        let deleted = (|| {
            let transaction = self.conn.unchecked_transaction()?;
            let mut deleted = Vec::new();
            for name in names {
                if transaction.execute("DELETE FROM users WHERE name = ?1", [name])? == 1 {
                    deleted.push(name.clone());
                }
            }
            transaction.commit()?;
            Ok(deleted)
        })();
        deleted.map_err(|e| self.sqlite(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn users_outlive_the_store_and_only_verifiers_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let verifier = ScramVerifier::from_password("pencil");
        let alice = StoredUser {
            name: "alice".into(),
            role: Role::Readonly,
            verifier: Some(verifier.clone()),
        };
        {
            let store = UserStore::open(dir.path()).unwrap();
            assert!(store.insert(&alice, "admin").unwrap());
            assert!(!store.insert(&alice, "admin").unwrap(), "a second alice");
        }
        let store = UserStore::open(dir.path()).unwrap();
        assert_eq!(store.load().unwrap(), vec![alice.clone()]);
        let mode = std::fs::metadata(store.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let bytes = std::fs::read(store.path()).unwrap();
        assert!(!bytes.windows(6).any(|w| w == b"pencil"));

        assert!(store.set_verifier("alice", None).unwrap());
        assert_eq!(store.load().unwrap()[0].verifier, None);
        assert!(!store.set_verifier("bob", Some(&verifier)).unwrap());
        let names = ["alice".to_owned(), "bob".to_owned()];
        assert_eq!(store.delete(&names).unwrap(), vec!["alice".to_owned()]);
        assert!(store.delete(&names).unwrap().is_empty());
        assert!(store.load().unwrap().is_empty());
    }

    #[test]
    fn a_row_with_an_unknown_role_is_named_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let store = UserStore::open(dir.path()).unwrap();
        store
            .conn
            .execute(
                "INSERT INTO users VALUES ('eve', 'root', NULL, 'now', 'admin')",
                [],
            )
            .unwrap();
        let message = store.load().unwrap_err().to_string();
        assert!(
            message.contains("\"eve\"") && message.contains("\"root\""),
            "{message}"
        );
    }
}
