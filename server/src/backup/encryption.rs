//! Encryption at rest: an archive's data entries as WinZip AES-256 entries (AE-2, the format
//! 7-Zip, WinZip and Python's `pyzipper` open with the passphrase), the manifest left plain so
//! that listing and retention work without the key.
//!
//! Each entry's bytes, once deflated, are `salt (16) ‖ verifier (2) ‖ AES-256-CTR(data) ‖
//! HMAC-SHA1(ciphertext)[..10]`; the keys come from PBKDF2-HMAC-SHA1 (1000 rounds, as the
//! format fixes) of the passphrase and the entry's random salt. Reading is the `zip` crate's.

use std::collections::BTreeMap;
use std::sync::Arc;

use aes::Aes256;
use ctr::cipher::{KeyIvInit, StreamCipher};
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use zeroize::Zeroizing;

use super::destination::SecretSource;
use super::error::BackupError;

/// What SQL and the manifest call the one algorithm offered.
pub const ALGORITHM: &str = "aes-256";
/// How the manifest names the entries' format.
pub const ENTRY_FORMAT: &str = "winzip-ae2";
/// Bytes an encrypted entry has beyond its compressed data: salt, verifier and MAC.
pub const OVERHEAD: u64 = (SALT + VERIFIER + MAC) as u64;
/// The ZIP method code of an AES entry (its real method is in the 0x9901 extra field).
pub const AES_METHOD: u16 = 99;

const SALT: usize = 16;
const VERIFIER: usize = 2;
const MAC: usize = 10;
const KEY: usize = 32;
const ROUNDS: u32 = 1000;

/// `[backup.keys.NAME]`: where one key's passphrase is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySettings {
    pub name: String,
    pub source: SecretSource,
}

/// One configured key: its name (what manifests and SQL say) and its passphrase.
pub struct Key {
    name: String,
    passphrase: Zeroizing<Vec<u8>>,
}

impl Key {
    pub fn new(name: &str, passphrase: &[u8]) -> Key {
        Key {
            name: name.to_owned(),
            passphrase: Zeroizing::new(passphrase.to_vec()),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the `zip` reader takes as the password.
    pub fn passphrase(&self) -> &[u8] {
        &self.passphrase
    }
}

// Never the passphrase, in a log or an error.
impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key").field("name", &self.name).finish()
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.name == other.name
    }
}

impl Eq for Key {}

/// Every configured key, by name; cheap to clone. Several at once, so that a key can be
/// rotated: new archives name the new key, older ones still open with theirs.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    keys: Arc<BTreeMap<String, Arc<Key>>>,
}

impl Keyring {
    /// Reads every key's passphrase now (at start-up), so that a missing one is found before
    /// the first backup needs it.
    pub fn load(settings: &[KeySettings]) -> Result<Keyring, String> {
        let mut keys = BTreeMap::new();
        for s in settings {
            let key = format!("[backup.keys.{}]", s.name);
            let passphrase = Zeroizing::new(s.source.read(&key)?);
            keys.insert(
                s.name.clone(),
                Arc::new(Key::new(&s.name, passphrase.as_bytes())),
            );
        }
        Ok(Keyring {
            keys: Arc::new(keys),
        })
    }

    /// As [`Keyring::load`], leaving out (with a warning) the keys whose passphrase cannot be
    /// read: for the command line, where only the archive at hand needs its key.
    pub fn load_readable(settings: &[KeySettings]) -> Keyring {
        let mut keys = BTreeMap::new();
        for s in settings {
            match Keyring::load(std::slice::from_ref(s)) {
                Ok(one) => keys.extend(one.keys.iter().map(|(n, k)| (n.clone(), Arc::clone(k)))),
                Err(why) => {
                    tracing::warn!(key = %s.name, "{why}; archives encrypted with it cannot be read")
                }
            }
        }
        Keyring {
            keys: Arc::new(keys),
        }
    }

    /// A keyring of the given keys (tests, tools).
    pub fn of(keys: impl IntoIterator<Item = Key>) -> Keyring {
        Keyring {
            keys: Arc::new(
                keys.into_iter()
                    .map(|k| (k.name.clone(), Arc::new(k)))
                    .collect(),
            ),
        }
    }

    /// The key named `name`, to write with.
    pub fn get(&self, name: &str) -> Result<Arc<Key>, BackupError> {
        self.keys
            .get(name)
            .cloned()
            .ok_or_else(|| BackupError::UnknownKey {
                known: self.names(),
            })
    }

    /// The key an archive names, to read it with (`None` when not configured).
    pub fn find(&self, name: &str) -> Option<Arc<Key>> {
        self.keys.get(name).cloned()
    }

    /// The names configured, comma-separated (or "none").
    pub fn names(&self) -> String {
        if self.keys.is_empty() {
            "none".into()
        } else {
            self.keys.keys().cloned().collect::<Vec<_>>().join(", ")
        }
    }
}

/// Encrypts one entry as it is written: [`Sealer::header`] first, then every compressed
/// chunk through [`Sealer::seal`], then [`Sealer::finish`]'s code.
pub struct Sealer {
    cipher: ctr::Ctr128LE<Aes256>,
    mac: Hmac<Sha1>,
    header: [u8; SALT + VERIFIER],
    buffer: Vec<u8>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer").finish_non_exhaustive()
    }
}

impl Sealer {
    /// A new entry's encryption with `key` and a fresh random salt.
    pub fn new(key: &Key) -> Sealer {
        let salt: [u8; SALT] = rand::random();
        Sealer::with_salt(key, salt)
    }

    fn with_salt(key: &Key, salt: [u8; SALT]) -> Sealer {
        let mut derived = Zeroizing::new([0u8; 2 * KEY + VERIFIER]);
        pbkdf2::pbkdf2_hmac::<Sha1>(key.passphrase(), &salt, ROUNDS, derived.as_mut());
        let (aes_key, rest) = derived.split_at(KEY);
        let (mac_key, verifier) = rest.split_at(KEY);
        // The format's counter is little-endian and starts at 1.
        let mut iv = [0u8; 16];
        iv[0] = 1;
        let cipher = ctr::Ctr128LE::<Aes256>::new_from_slices(aes_key, &iv)
            .unwrap_or_else(|_| unreachable!("a 32-byte key and a 16-byte counter"));
        let mac = <Hmac<Sha1> as KeyInit>::new_from_slice(mac_key)
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        let mut header = [0u8; SALT + VERIFIER];
        header[..SALT].copy_from_slice(&salt);
        header[SALT..].copy_from_slice(verifier);
        Sealer {
            cipher,
            mac,
            header,
            buffer: Vec::new(),
        }
    }

    /// The bytes that open the entry's data: salt and password verifier.
    pub fn header(&self) -> &[u8] {
        &self.header
    }

    /// `plain` encrypted (the returned slice lives until the next call).
    pub fn seal(&mut self, plain: &[u8]) -> &[u8] {
        self.buffer.clear();
        self.buffer.extend_from_slice(plain);
        self.cipher.apply_keystream(&mut self.buffer);
        self.mac.update(&self.buffer);
        &self.buffer
    }

    /// The authentication code that closes the entry's data.
    pub fn finish(self) -> [u8; MAC] {
        let code = self.mac.finalize().into_bytes();
        let mut out = [0u8; MAC];
        out.copy_from_slice(&code[..MAC]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Our entries open with the `zip` crate's AES reader (an independent implementation),
    /// and refuse a wrong passphrase.
    #[test]
    fn a_sealed_entry_opens_with_its_passphrase_only() {
        use std::io::Read;
        let key = Key::new("k", b"correct horse");
        let data: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let mut sealer = Sealer::new(&key);
        let mut stored = sealer.header().to_vec();
        for chunk in data.chunks(7_777) {
            stored.extend_from_slice(sealer.seal(chunk));
        }
        stored.extend_from_slice(&sealer.finish());
        assert_eq!(stored.len() as u64, data.len() as u64 + OVERHEAD);

        let mut zip =
            super::super::zip_writer::ZipWriter::new(std::io::Cursor::new(Vec::new())).unwrap();
        let when = super::super::zip_writer::DosTime::from_utc(chrono::Utc::now());
        zip.start_sealed_entry(
            "d",
            super::super::zip_writer::Method::Stored,
            data.len() as u64,
            when,
        )
        .unwrap();
        zip.write_data(&stored).unwrap();
        zip.finish_entry(0, data.len() as u64).unwrap();
        let (cursor, _) = zip.finish().unwrap();
        let bytes = cursor.into_inner();
        assert!(
            !bytes.windows(64).any(|w| w == &data[1000..1064]),
            "plaintext in the archive"
        );

        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
        let mut out = Vec::new();
        archive
            .by_name_decrypt("d", b"correct horse")
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data);
        assert!(matches!(
            archive.by_name_decrypt("d", b"wrong").map(|_| ()),
            Err(zip::result::ZipError::InvalidPassword)
        ));
    }
}
