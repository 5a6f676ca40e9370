//! SCRAM-SHA-256 verifiers in PostgreSQL's text form:
//! `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (base64).
//!
//! A verifier lets the server check a client's proof without ever holding the password or
//! anything a client could log in with.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use pgwire::api::auth::sasl::scram::{ScramSecret, gen_salted_password};

/// Iterations used for verifiers this server makes (PostgreSQL's default).
pub const DEFAULT_ITERATIONS: usize = 4096;
const PREFIX: &str = "SCRAM-SHA-256$";

/// A parsed SCRAM-SHA-256 verifier.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    pub iterations: usize,
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for ScramVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramVerifier")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl ScramVerifier {
    /// Derives a verifier from a password with a fresh random salt.
    pub fn from_password(password: &str) -> ScramVerifier {
        let salt: [u8; 16] = rand::random();
        Self::from_password_and_salt(password, &salt, DEFAULT_ITERATIONS)
    }

    /// What an unknown user `name` is answered with: a salt of its own, the same at every
    /// attempt and across restarts, derived from the server's `secret`, so that the SCRAM
    /// exchange does not tell an unknown name from a real one. No password matches it.
    pub fn decoy(secret: &[u8], name: &str) -> ScramVerifier {
        use sha2::{Digest, Sha256};
        let derive = |purpose: &str| {
            let mut hash = Sha256::new();
            hash.update(secret);
            hash.update([0]);
            hash.update(purpose.as_bytes());
            hash.update([0]);
            hash.update(name.as_bytes());
            hash.finalize().to_vec()
        };
        ScramVerifier {
            iterations: DEFAULT_ITERATIONS,
            salt: derive("salt")[..16].to_vec(),
            stored_key: derive("stored key"),
            server_key: derive("server key"),
        }
    }

    fn from_password_and_salt(password: &str, salt: &[u8], iterations: usize) -> ScramVerifier {
        let salted = gen_salted_password(password, salt, iterations);
        match ScramSecret::verifier_from_salted_password(salt.to_vec(), salted, iterations) {
            ScramSecret::Verifier {
                salt,
                iterations,
                stored_key,
                server_key,
            } => ScramVerifier {
                iterations,
                salt,
                stored_key,
                server_key,
            },
            // pgwire documents that this constructor always returns a verifier.
            ScramSecret::SaltedPassword { .. } => unreachable!("pgwire returned a salted password"),
        }
    }

    /// Parses PostgreSQL's text form; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<ScramVerifier, String> {
        let rest = text
            .strip_prefix(PREFIX)
            .ok_or_else(|| format!("a scram secret starts with {PREFIX:?}"))?;
        let (params, keys) = rest.split_once('$').ok_or(
            "a scram secret has the form SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>",
        )?;
        let (iterations, salt) = params
            .split_once(':')
            .ok_or("missing ':' between iterations and salt")?;
        let (stored_key, server_key) = keys
            .split_once(':')
            .ok_or("missing ':' between StoredKey and ServerKey")?;
        let iterations: usize = iterations
            .parse()
            .map_err(|_| format!("iterations {iterations:?} is not a number"))?;
        if iterations < DEFAULT_ITERATIONS {
            return Err(format!(
                "iterations must be at least {DEFAULT_ITERATIONS}, got {iterations}"
            ));
        }
        let decode = |what: &str, b64: &str| {
            BASE64
                .decode(b64)
                .map_err(|_| format!("{what} is not valid base64"))
        };
        let verifier = ScramVerifier {
            iterations,
            salt: decode("salt", salt)?,
            stored_key: decode("StoredKey", stored_key)?,
            server_key: decode("ServerKey", server_key)?,
        };
        if verifier.stored_key.len() != 32 || verifier.server_key.len() != 32 {
            return Err("StoredKey and ServerKey must each be 32 bytes (SHA-256)".into());
        }
        Ok(verifier)
    }

    /// The verifier as pgwire's SCRAM mechanism wants it.
    pub fn to_secret(&self) -> ScramSecret {
        ScramSecret::Verifier {
            salt: self.salt.clone(),
            iterations: self.iterations,
            stored_key: self.stored_key.clone(),
            server_key: self.server_key.clone(),
        }
    }
}

impl std::fmt::Display for ScramVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{PREFIX}{}:{}${}:{}",
            self.iterations,
            BASE64.encode(&self.salt),
            BASE64.encode(&self.stored_key),
            BASE64.encode(&self.server_key)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips() {
        let verifier = ScramVerifier::from_password("pencil");
        let text = verifier.to_string();
        assert!(text.starts_with("SCRAM-SHA-256$4096:"), "{text}");
        assert_eq!(ScramVerifier::parse(&text).unwrap(), verifier);
    }

    #[test]
    fn verifier_depends_on_password_and_salt_only() {
        // Logging in with it is proven end to end (psql and tokio-postgres in tests/e2e).
        let a = ScramVerifier::from_password_and_salt("pencil", b"0123456789abcdef", 4096);
        let b = ScramVerifier::from_password_and_salt("pencil", b"0123456789abcdef", 4096);
        assert_eq!(a, b);
        assert_ne!(
            a,
            ScramVerifier::from_password_and_salt("pencil2", b"0123456789abcdef", 4096)
        );
    }

    #[test]
    fn malformed_secrets_say_what_is_wrong() {
        assert!(
            ScramVerifier::parse("md5abc")
                .unwrap_err()
                .contains("starts with")
        );
        assert!(
            ScramVerifier::parse("SCRAM-SHA-256$10:AAAA$AAAA:AAAA")
                .unwrap_err()
                .contains("at least")
        );
        assert!(
            ScramVerifier::parse("SCRAM-SHA-256$4096:!!$AAAA:AAAA")
                .unwrap_err()
                .contains("base64")
        );
    }
}
