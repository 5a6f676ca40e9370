//! Turning the configured users into SCRAM verifiers at start-up.
//!
//! A user's password comes from an environment variable or is given as a SCRAM verifier. When
//! a `password_env` variable is unset, the server does not fall back to a default password:
//! it generates a random one once, stores it in `<data_dir>/credentials/<user>.password` with
//! mode 0600, logs where it is, and reuses that file on later starts until the variable is set.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rand::distr::{Alphanumeric, SampleString};

use crate::config::{CredentialSource, UserConfig};
use crate::roles::Role;
use crate::scram::ScramVerifier;

const GENERATED_PASSWORD_LEN: usize = 24;

/// A generated password file that could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("{action} {path}: {source}")]
pub struct CredentialError {
    action: &'static str,
    path: PathBuf,
    source: std::io::Error,
}

/// A user who may log in.
#[derive(Debug, Clone)]
pub struct User {
    pub role: Role,
    pub verifier: ScramVerifier,
}

/// Every user who may log in, by name.
#[derive(Debug)]
pub struct UserDirectory {
    users: HashMap<String, User>,
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
            users: resolved,
            decoy_secret,
        })
    }

    /// The user named `name`, if configured.
    pub fn get(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    /// The verifier to run the SCRAM exchange with: the user's, or the name's decoy.
    pub fn verifier_for(&self, name: &str) -> ScramVerifier {
        match self.users.get(name) {
            Some(user) => user.verifier.clone(),
            None => ScramVerifier::decoy(self.decoy_secret.as_bytes(), name),
        }
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
    fn set_variable_writes_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let users = admin(CredentialSource::Env("PW".into()));
        let directory =
            UserDirectory::resolve(&users, dir.path(), |_| Some("secret".into())).unwrap();
        assert!(!generated_password_file(dir.path(), "admin").exists());
        assert_eq!(directory.get("admin").unwrap().role, Role::Admin);
        assert!(directory.get("nobody").is_none());
    }
}
