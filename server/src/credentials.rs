//! Who may log in: the users of the config, whose passwords are turned into SCRAM
//! verifiers at start-up, and the users made in SQL (`CREATE USER`, kept by
//! [`UserStore`]).
//!
//! A config user's password comes from an environment variable or is given as a SCRAM
//! verifier. When a `password_env` variable is unset, the server does not fall back to a
//! default password: it generates a random one once, stores it in
//! `<data_dir>/credentials/<user>.password` with mode 0600, logs where it is, and reuses that
//! file on later starts until the variable is set.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

use rand::distr::{Alphanumeric, SampleString};

use crate::config::{CredentialSource, UserConfig};
use crate::roles::Role;
use crate::scram::ScramVerifier;
use crate::user_store::{StoredUser, UserStore, UserStoreError};

const GENERATED_PASSWORD_LEN: usize = 24;

/// A generated password file that could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("{action} {path}: {source}")]
pub struct CredentialError {
    action: &'static str,
    path: PathBuf,
    source: std::io::Error,
}

/// Why a user could not be made, changed or dropped in SQL.
#[derive(Debug, thiserror::Error)]
pub enum UserChangeError {
    #[error(
        "role \"{0}\" already exists; choose another name, or change its password with ALTER USER {0} PASSWORD '…'"
    )]
    Exists(String),
    #[error(
        "role \"{0}\" does not exist; \\du lists the users (DROP USER IF EXISTS skips a missing one)"
    )]
    NotFound(String),
    #[error(
        "user \"{0}\" is defined in the config file ([users.{0}]): change or remove it there and restart; SQL manages only the users it made"
    )]
    Configured(String),
    #[error("this server keeps no users made in SQL; add the user as [users.NAME] in the config")]
    NoStore,
    #[error(transparent)]
    Store(#[from] UserStoreError),
}

/// A user who may log in.
#[derive(Debug, Clone)]
pub struct User {
    pub role: Role,
    pub verifier: ScramVerifier,
}

/// Where a user comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Config,
    Sql,
}

/// Every user who may log in, by name.
#[derive(Debug)]
pub struct UserDirectory {
    /// The config's users: fixed while the server runs.
    configured: HashMap<String, User>,
    /// The users made in SQL, as their store holds them.
    made: RwLock<HashMap<String, StoredUser>>,
    /// Where those are kept; held while one changes, so the store and `made` agree.
    store: Option<Mutex<UserStore>>,
    /// Counts changes to `made`, so that a session's catalogs know to list users again.
    version: AtomicU64,
    /// Unknown user names are answered with a verifier derived from this secret, so a login
    /// attempt cannot tell "no such user" from "wrong password" (see `ScramVerifier::decoy`).
    decoy_secret: String,
}

impl UserDirectory {
    /// Resolves every configured user's credential; `env` reads environment variables.
    pub fn resolve(
        users: &[UserConfig],
        data_dir: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<UserDirectory, CredentialError> {
        let mut resolved = HashMap::new();
        for user in users {
            let verifier = match &user.credential {
                CredentialSource::Scram(verifier) => verifier.clone(),
                CredentialSource::Env(var) => match env(var).filter(|v| !v.is_empty()) {
                    Some(password) => ScramVerifier::from_password(&password),
                    None => {
                        let path = generated_password_file(data_dir, &user.name);
                        let password = read_or_generate(&path)?;
                        tracing::warn!(
                            user = %user.name,
                            variable = %var,
                            path = %path.display(),
                            "password variable is not set; using the generated password stored in this file (mode 0600)"
                        );
                        ScramVerifier::from_password(&password)
                    }
                },
            };
            resolved.insert(
                user.name.clone(),
                User {
                    role: user.role,
                    verifier,
                },
            );
        }
        // Kept in the data directory: a decoy salt that changed at each restart would itself
        // tell unknown names apart.
        let decoy_secret = read_or_generate(&data_dir.join("credentials").join(".decoy-secret"))?;
        Ok(UserDirectory {
            configured: resolved,
            made: RwLock::default(),
            store: None,
            version: AtomicU64::new(0),
            decoy_secret,
        })
    }

    /// Adds the users made in SQL that `store` keeps, and keeps the ones made from now on
    /// there. A config user of the same name wins (the config says who an operator trusts).
    pub fn with_store(mut self, store: UserStore) -> Result<UserDirectory, UserStoreError> {
        let mut made = HashMap::new();
        for user in store.load()? {
            if self.configured.contains_key(&user.name) {
                tracing::warn!(user = %user.name, store = %store.path().display(), "a user made in SQL has the name of a config user, which is the one that logs in; DROP USER it after removing [users.{}] to use it again", user.name);
                continue;
            }
            made.insert(user.name.clone(), user);
        }
        self.made = RwLock::new(made);
        self.store = Some(Mutex::new(store));
        Ok(self)
    }

    fn made(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, StoredUser>> {
        self.made.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The role of the user named `name`, if there is one.
    pub fn role_of(&self, name: &str) -> Option<Role> {
        match self.configured.get(name) {
            Some(user) => Some(user.role),
            None => self.made().get(name).map(|u| u.role),
        }
    }

    /// Where the user named `name` comes from, if there is one.
    pub fn origin_of(&self, name: &str) -> Option<Origin> {
        if self.configured.contains_key(name) {
            Some(Origin::Config)
        } else {
            self.made().contains_key(name).then_some(Origin::Sql)
        }
    }

    /// The verifier to run the SCRAM exchange with: the user's, or the name's decoy (also
    /// for a user made without a password, whom no password lets in).
    pub fn verifier_for(&self, name: &str) -> ScramVerifier {
        let verifier = match self.configured.get(name) {
            Some(user) => Some(user.verifier.clone()),
            None => self.made().get(name).and_then(|u| u.verifier.clone()),
        };
        verifier.unwrap_or_else(|| ScramVerifier::decoy(self.decoy_secret.as_bytes(), name))
    }

    /// Every user and their role, by name.
    pub fn list(&self) -> Vec<(String, Role)> {
        let mut all: Vec<(String, Role)> = self
            .configured
            .iter()
            .map(|(name, user)| (name.clone(), user.role))
            .chain(self.made().values().map(|u| (u.name.clone(), u.role)))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Changes so far to the users made in SQL.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Runs `on_disk` with the store held (one change at a time), then, once it is on disk,
    /// `in_memory`: logins read the users in memory meanwhile, and wait only for that.
    fn change<T>(
        &self,
        names: &[String],
        on_disk: impl FnOnce(&UserStore, &HashMap<String, StoredUser>) -> Result<T, UserChangeError>,
        in_memory: impl FnOnce(&mut HashMap<String, StoredUser>, &T),
    ) -> Result<T, UserChangeError> {
        if let Some(name) = names.iter().find(|n| self.configured.contains_key(*n)) {
            return Err(UserChangeError::Configured(name.clone()));
        }
        let store = self.store.as_ref().ok_or(UserChangeError::NoStore)?;
        let store = store.lock().unwrap_or_else(|p| p.into_inner());
        let done = on_disk(&store, &self.made())?;
        in_memory(
            &mut self.made.write().unwrap_or_else(|p| p.into_inner()),
            &done,
        );
        self.version.fetch_add(1, Ordering::AcqRel);
        Ok(done)
    }

    /// Makes `user` (`by`: who made it, as the store records).
    pub fn create(&self, user: StoredUser, by: &str) -> Result<(), UserChangeError> {
        let name = user.name.clone();
        self.change(
            std::slice::from_ref(&name),
            |store, made| {
                if made.contains_key(&name) || !store.insert(&user, by)? {
                    return Err(UserChangeError::Exists(name.clone()));
                }
                Ok(())
            },
            |made, ()| {
                made.insert(name.clone(), user.clone());
            },
        )
    }

    /// Gives the user `name` made in SQL a new verifier (`None`: no password lets it in).
    pub fn set_verifier(
        &self,
        name: &str,
        verifier: Option<ScramVerifier>,
    ) -> Result<(), UserChangeError> {
        let named = name.to_owned();
        self.change(
            std::slice::from_ref(&named),
            |store, made| {
                // A row missing on disk is missing: memory must not say otherwise.
                if !made.contains_key(name) || !store.set_verifier(name, verifier.as_ref())? {
                    return Err(UserChangeError::NotFound(named.clone()));
                }
                Ok(())
            },
            |made, ()| {
                if let Some(user) = made.get_mut(name) {
                    user.verifier = verifier.clone();
                }
            },
        )
    }

    /// Drops the users `names` made in SQL, all or none: the ones there were.
    pub fn remove(&self, names: &[String]) -> Result<Vec<String>, UserChangeError> {
        self.change(
            names,
            |store, _| Ok(store.delete(names)?),
            |made, removed| {
                for name in removed {
                    made.remove(name);
                }
            },
        )
    }
}

/// Where the generated password of `user` is kept.
pub fn generated_password_file(data_dir: &Path, user: &str) -> PathBuf {
    data_dir
        .join("credentials")
        .join(format!("{user}.password"))
}

fn read_or_generate(path: &Path) -> Result<String, CredentialError> {
    let err = |action, source| CredentialError {
        action,
        path: path.to_owned(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err("reading", e)),
    }
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| err("creating the directory of", e))?;
    }
    let password = Alphanumeric.sample_string(&mut rand::rng(), GENERATED_PASSWORD_LEN);
    // Written under a temporary name and renamed, so a crash never leaves a half-written
    // password that the next start would accept.
    let tmp = path.with_extension("password.tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| err("creating", e))?;
    file.write_all(format!("{password}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| err("writing", e))?;
    std::fs::rename(&tmp, path).map_err(|e| err("renaming into place", e))?;
    Ok(password)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn admin(credential: CredentialSource) -> Vec<UserConfig> {
        vec![UserConfig {
            name: "admin".into(),
            role: Role::Admin,
            credential,
            max_connections: None,
            timeouts: Vec::new(),
        }]
    }

    /// Unknown users all got the same decoy salt while real users each have their own, so
    /// existence was detectable without a password.
    #[test]
    fn unknown_users_shared_one_decoy_salt() {
        let dir = tempfile::tempdir().unwrap();
        let users = admin(CredentialSource::Env("PW".into()));
        let env = |_: &str| Some("secret".to_owned());
        let directory = UserDirectory::resolve(&users, dir.path(), env).unwrap();
        let (a, b) = (
            directory.verifier_for("alice"),
            directory.verifier_for("bob"),
        );
        assert_ne!(a.salt, b.salt);
        assert_eq!(a.salt.len(), directory.verifier_for("admin").salt.len());
        assert_eq!(a, directory.verifier_for("alice"), "stable for one name");
        let restarted = UserDirectory::resolve(&users, dir.path(), env).unwrap();
        assert_eq!(a, restarted.verifier_for("alice"), "stable across restarts");
    }

    #[test]
    fn unset_variable_generates_a_private_password_once() {
        let dir = tempfile::tempdir().unwrap();
        let users = admin(CredentialSource::Env("NOT_SET".into()));
        UserDirectory::resolve(&users, dir.path(), |_| None).unwrap();
        let path = generated_password_file(dir.path(), "admin");
        let first = std::fs::read_to_string(&path).unwrap();
        assert_eq!(first.trim().len(), GENERATED_PASSWORD_LEN);
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        UserDirectory::resolve(&users, dir.path(), |_| None).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            first,
            "regenerated on restart"
        );
    }

    #[test]
    fn users_made_in_sql_come_back_after_a_restart_and_the_configs_stay_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let users = admin(CredentialSource::Env("PW".into()));
        let env = |_: &str| Some("secret".to_owned());
        let open = || {
            UserDirectory::resolve(&users, dir.path(), env)
                .unwrap()
                .with_store(UserStore::open(dir.path()).unwrap())
                .unwrap()
        };
        let directory = open();
        let decoy = directory.verifier_for("alice");
        let verifier = ScramVerifier::from_password("pencil");
        let alice = StoredUser {
            name: "alice".into(),
            role: Role::Readwrite,
            verifier: None,
        };
        directory.create(alice.clone(), "admin").unwrap();
        assert_eq!(
            directory.verifier_for("alice"),
            decoy,
            "no password, no login"
        );
        assert!(matches!(
            directory.create(alice, "admin"),
            Err(UserChangeError::Exists(_))
        ));
        let version = directory.version();
        directory
            .set_verifier("alice", Some(verifier.clone()))
            .unwrap();
        assert!(directory.version() > version);
        for refused in [
            directory.set_verifier("admin", None).map(|_| false),
            directory.remove(&["admin".into()]).map(|_| false),
        ] {
            assert!(matches!(refused, Err(UserChangeError::Configured(_))));
        }
        assert!(matches!(
            directory.set_verifier("bob", None),
            Err(UserChangeError::NotFound(_))
        ));
        drop(directory);

        let directory = open();
        assert_eq!(directory.role_of("alice"), Some(Role::Readwrite));
        assert_eq!(directory.verifier_for("alice"), verifier);
        assert_eq!(
            directory.list(),
            vec![
                ("admin".into(), Role::Admin),
                ("alice".into(), Role::Readwrite)
            ]
        );
        let both = ["alice".to_owned(), "nobody".to_owned()];
        assert_eq!(directory.remove(&both).unwrap(), vec!["alice".to_owned()]);
        assert!(directory.remove(&both).unwrap().is_empty());
        drop(directory);
        assert_eq!(open().role_of("alice"), None);
    }

    /// A user made in SQL whose name a config user took since is the config's.
    #[test]
    fn a_config_user_wins_over_a_stored_one_of_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let store = UserStore::open(dir.path()).unwrap();
        let stored = StoredUser {
            name: "admin".into(),
            role: Role::Readonly,
            verifier: Some(ScramVerifier::from_password("other")),
        };
        store.insert(&stored, "someone").unwrap();
        let users = admin(CredentialSource::Env("PW".into()));
        let directory = UserDirectory::resolve(&users, dir.path(), |_| Some("secret".into()))
            .unwrap()
            .with_store(store)
            .unwrap();
        assert_eq!(directory.role_of("admin"), Some(Role::Admin));
        assert_ne!(directory.verifier_for("admin"), stored.verifier.unwrap());
        assert_eq!(directory.list().len(), 1);
    }

    #[test]
    fn set_variable_writes_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let users = admin(CredentialSource::Env("PW".into()));
        let directory =
            UserDirectory::resolve(&users, dir.path(), |_| Some("secret".into())).unwrap();
        assert!(!generated_password_file(dir.path(), "admin").exists());
        assert_eq!(directory.role_of("admin"), Some(Role::Admin));
        assert!(directory.role_of("nobody").is_none());
    }
}
