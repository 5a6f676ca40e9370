//! A destination in object storage (S3 and servers that speak its API), through the
//! `object_store` crate. Backups run on their own threads, so this offers blocking `Write`
//! and `Read + Seek` views of objects, driving the async client on the server's runtime.
//!
//! Publishing follows the on-disk rules: an archive is uploaded under a temporary key beside
//! its final one (multipart, a few parts in flight, so memory stays bounded), read back and
//! checked, then copied under the final key only if that key does not exist (S3's conditional
//! write), and the temporary object is deleted. A failed or cancelled upload is aborted.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use object_store::aws::{AmazonS3Builder, S3CopyIfNotExists};
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectStore, RetryConfig, WriteMultipart};
use tokio::runtime::Handle;

use super::super::error::BackupError;
use crate::new_file::TEMP_PREFIX;

/// Where a secret comes from: never the config itself, never SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// An environment variable of the server process.
    Env(String),
    /// A file (its first line).
    File(std::path::PathBuf),
}

impl SecretSource {
    /// The secret; `key` is the config key that named the source, for the error.
    pub fn read(&self, key: &str) -> Result<String, String> {
        let value = match self {
            SecretSource::Env(name) => std::env::var(name).map_err(|_| {
                format!("{key}: the environment variable {name} is not set (or not UTF-8); set it in the server's environment")
            })?,
            SecretSource::File(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("{key}: cannot read {}: {e}", path.display()))?
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned(),
        };
        if value.trim().is_empty() {
            return Err(format!("{key}: the secret it names is empty"));
        }
        Ok(value.trim().to_owned())
    }
}

/// How one destination reaches its store, as the config says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Settings {
    /// The destination's name in the config (`offsite` of `[backup.destinations.offsite]`).
    pub name: String,
    pub bucket: String,
    /// Keys live under this prefix (no leading or trailing `/`; may be empty).
    pub prefix: String,
    /// Any S3-compatible server; AWS when absent.
    pub endpoint: Option<String>,
    pub region: String,
    /// Where the access key id and the secret key are read from, at start-up; `None` uses
    /// what the environment provides (AWS_* variables, an instance profile).
    pub keys: Option<(SecretSource, SecretSource)>,
}

impl S3Settings {
    /// `s3://bucket/prefix`, as the config wrote it.
    pub fn url(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// Parts uploaded at once: memory per upload is about this many times [`PART_SIZE`].
const PARTS_IN_FLIGHT: usize = 4;
/// S3's smallest part is 5 MiB; larger parts mean fewer requests.
const PART_SIZE: usize = 8 << 20;
/// How much of an object one ranged read fetches, at most.
const READ_BLOCK: usize = 8 << 20;
/// The first ranged read of an object: enough for an export's header or a ZIP's end.
const FIRST_READ_BLOCK: usize = 64 << 10;

/// One configured object-storage destination.
pub struct ObjectDestination {
    settings: S3Settings,
    store: Arc<dyn ObjectStore>,
    runtime: Handle,
}

impl std::fmt::Debug for ObjectDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectDestination")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// What an object is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The key under the destination's prefix.
    pub key: String,
    pub size: u64,
    pub modified: chrono::DateTime<chrono::Utc>,
}

impl ObjectDestination {
    /// A client for `settings` (nothing is sent yet); its futures run on `runtime`.
    pub fn connect(settings: S3Settings, runtime: Handle) -> Result<ObjectDestination, String> {
        // Without keys in the config, what the environment provides (AWS_* variables, an
        // instance profile).
        let mut builder = if settings.keys.is_some() {
            AmazonS3Builder::new()
        } else {
            AmazonS3Builder::from_env()
        };
        builder = builder
            .with_bucket_name(&settings.bucket)
            .with_region(&settings.region)
            // Conditional copy, so an existing archive is never replaced (AWS S3, MinIO,
            // and servers with If-None-Match on CompleteMultipartUpload).
            .with_copy_if_not_exists(S3CopyIfNotExists::Multipart)
            .with_retry(RetryConfig {
                max_retries: 3,
                retry_timeout: Duration::from_secs(30),
                ..RetryConfig::default()
            })
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(120)),
            );
        if let Some(endpoint) = &settings.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"))
                // Self-hosted servers rarely have a DNS name per bucket.
                .with_virtual_hosted_style_request(false);
        }
        if let Some((id, secret)) = &settings.keys {
            let table = format!("[backup.destinations.{}]", settings.name);
            let id = id.read(&format!("{table} access_key_id"))?;
            let secret = secret.read(&format!("{table} secret_access_key"))?;
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
        }
        let store = builder.build().map_err(|e| e.to_string())?;
        Ok(ObjectDestination {
            settings,
            store: Arc::new(store),
            runtime,
        })
    }

    pub fn name(&self) -> &str {
        &self.settings.name
    }

    pub fn settings(&self) -> &S3Settings {
        &self.settings
    }

    /// How SQL names `key` here: `offsite:daily/d.zip`.
    pub fn display(&self, key: &str) -> String {
        format!("{}:{key}", self.settings.name)
    }

    /// The full object path of `key`, which must be a plain relative key.
    fn path(&self, key: &str) -> Result<ObjectPath, BackupError> {
        check_key(key).map_err(|reason| {
            BackupError::PathRefused(format!("'{}': {reason}", self.display(key)))
        })?;
        self.internal_path(key)
    }

    /// The full object path of a key Cairn made itself (a temporary one).
    fn internal_path(&self, key: &str) -> Result<ObjectPath, BackupError> {
        let full = if self.settings.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}/{key}", self.settings.prefix)
        };
        ObjectPath::parse(&full)
            .map_err(|e| BackupError::PathRefused(format!("'{}': {e}", self.display(key))))
    }

    fn error(&self, action: &'static str, key: &str, e: object_store::Error) -> BackupError {
        BackupError::Destination {
            destination: self.settings.name.clone(),
            url: self.settings.url(),
            action,
            key: key.to_owned(),
            reason: explain(&e),
        }
    }

    /// Runs `future` on the server's runtime and waits for it (backup threads only).
    fn wait<T>(&self, future: impl std::future::Future<Output = T> + Send) -> T
    where
        T: Send,
    {
        self.runtime.block_on(future)
    }

    /// The object `key`, if it exists.
    pub fn head(&self, key: &str) -> Result<Option<ObjectInfo>, BackupError> {
        let path = self.path(key)?;
        match self.wait(self.store.head(&path)) {
            Ok(meta) => Ok(Some(ObjectInfo {
                key: key.to_owned(),
                size: meta.size,
                modified: meta.last_modified,
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error("reading", key, e)),
        }
    }

    /// Starts uploading a new object to be published as `key`, which must not exist yet.
    pub fn create(&self, key: &str) -> Result<Upload<'_>, BackupError> {
        if self.head(key)?.is_some() {
            return Err(BackupError::TargetExists {
                path: self.display(key).into(),
            });
        }
        let (dir, file) = match key.rsplit_once('/') {
            Some((dir, file)) => (format!("{dir}/"), file),
            None => (String::new(), key),
        };
        let temporary = format!("{dir}{TEMP_PREFIX}{}-{file}", uuid::Uuid::new_v4().simple());
        let path = self.internal_path(&temporary)?;
        let upload = self
            .wait(self.store.put_multipart(&path))
            .map_err(|e| self.error("starting an upload of", key, e))?;
        Ok(Upload {
            destination: self,
            key: key.to_owned(),
            temporary,
            path,
            writer: Some(WriteMultipart::new_with_chunk_size(upload, PART_SIZE)),
            uploaded: false,
            published: false,
            position: 0,
        })
    }

    /// Opens `key` for reading (ranged reads of a few MiB at a time).
    pub fn open(&self, key: &str) -> Result<ObjectReader<'_>, BackupError> {
        let path = self.path(key)?;
        self.open_at(path, key)
    }

    fn open_at(&self, path: ObjectPath, key: &str) -> Result<ObjectReader<'_>, BackupError> {
        let meta = match self.wait(self.store.head(&path)) {
            Ok(meta) => meta,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(BackupError::Io {
                    action: "opening",
                    path: self.display(key).into(),
                    source: io::Error::new(
                        io::ErrorKind::NotFound,
                        format!(
                            "no object {key} in {} (or the bucket does not exist); SHOW ARCHIVES IN '{}:' lists what is there",
                            self.settings.url(),
                            self.settings.name
                        ),
                    ),
                });
            }
            Err(e) => return Err(self.error("opening", key, e)),
        };
        Ok(ObjectReader {
            destination: self,
            key: key.to_owned(),
            path,
            size: meta.size,
            position: 0,
            block: Vec::new(),
            block_start: 0,
            next_block: FIRST_READ_BLOCK,
        })
    }

    /// Writes a small object in one request (a PUT is atomic: the object appears whole or
    /// not at all); an existing `key` is replaced.
    pub fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), BackupError> {
        let path = self.path(key)?;
        self.wait(self.store.put(&path, bytes.into()))
            .map(drop)
            .map_err(|e| self.error("uploading", key, e))
    }

    /// Reads a small object whole: at most `limit` bytes, or it is refused.
    pub fn get(&self, key: &str, limit: u64) -> Result<Vec<u8>, BackupError> {
        let path = self.path(key)?;
        let bytes = self.wait(async {
            let got = self.store.get(&path).await?;
            if got.meta.size > limit {
                return Ok(None);
            }
            got.bytes().await.map(Some)
        });
        match bytes {
            Ok(Some(bytes)) => Ok(bytes.to_vec()),
            Ok(None) => Err(BackupError::NotAnArchive {
                path: self.display(key).into(),
                reason: format!("larger than the {limit} bytes such an object may have"),
            }),
            Err(e) => Err(self.error("reading", key, e)),
        }
    }

    /// Deletes `key` (a missing one counts as deleted).
    pub fn delete(&self, key: &str) -> Result<(), BackupError> {
        let path = self.path(key)?;
        self.delete_at(&path, key)
    }

    fn delete_at(&self, path: &ObjectPath, key: &str) -> Result<(), BackupError> {
        match self.wait(self.store.delete(path)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error("deleting", key, e)),
        }
    }

    /// Every object under `prefix` (a key prefix; empty for all), Cairn's temporaries left out.
    pub fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, BackupError> {
        let base = if prefix.is_empty() {
            None
        } else {
            Some(self.path(prefix.trim_end_matches('/'))?)
        };
        let strip = if self.settings.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.settings.prefix)
        };
        let listed: Vec<_> = self.wait(async {
            let root = base.clone().or_else(|| {
                (!self.settings.prefix.is_empty())
                    .then(|| ObjectPath::from(self.settings.prefix.as_str()))
            });
            self.store.list(root.as_ref()).collect::<Vec<_>>().await
        });
        let mut objects = Vec::new();
        for item in listed {
            let meta = item.map_err(|e| self.error("listing", prefix, e))?;
            let full = meta.location.to_string();
            let key = full.strip_prefix(&strip).unwrap_or(&full).to_owned();
            if key.split('/').any(|part| part.starts_with(TEMP_PREFIX)) {
                continue;
            }
            objects.push(ObjectInfo {
                key,
                size: meta.size,
                modified: meta.last_modified,
            });
        }
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }
}

impl ObjectDestination {
    /// Deletes Cairn's temporary objects under the destination that are older than `age`:
    /// uploads that completed but were never published because the server died between the
    /// two. Younger ones may belong to a backup running now (on another server, say).
    pub fn remove_stale_temporaries(&self, age: Duration) -> Result<usize, BackupError> {
        let root = (!self.settings.prefix.is_empty())
            .then(|| ObjectPath::from(self.settings.prefix.as_str()));
        let listed: Vec<_> =
            self.wait(async { self.store.list(root.as_ref()).collect::<Vec<_>>().await });
        let cutoff = chrono::Utc::now() - chrono::Duration::from_std(age).unwrap_or_default();
        let mut removed = 0;
        for item in listed {
            let meta = item.map_err(|e| self.error("listing", "", e))?;
            let stale = meta
                .location
                .filename()
                .is_some_and(|name| name.starts_with(TEMP_PREFIX))
                && meta.last_modified < cutoff;
            if stale {
                self.delete_at(&meta.location, meta.location.as_ref())?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// Refuses keys that are not plain relative names, or that look like Cairn's temporaries.
fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("the key after the destination name is empty".into());
    }
    if key.starts_with('/') || key.ends_with('/') || key.contains("//") {
        return Err(
            "a key is a relative name such as daily/sales.zip (no leading, trailing or double '/')"
                .into(),
        );
    }
    for part in key.split('/') {
        if part == "." || part == ".." {
            return Err("a key may not contain '.' or '..' parts".into());
        }
        if part.starts_with(TEMP_PREFIX) {
            return Err(format!(
                "names starting with {TEMP_PREFIX} are Cairn's temporary objects; choose another name"
            ));
        }
    }
    if key.chars().any(char::is_control) {
        return Err("a key may not contain control characters".into());
    }
    Ok(())
}

/// What to check, by the kind of failure.
fn explain(e: &object_store::Error) -> String {
    let text = without_response_body(&e.to_string());
    let lower = text.to_ascii_lowercase();
    let refused = matches!(
        e,
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. }
    );
    let hint = if lower.contains("nosuchbucket") || lower.contains("bucket does not exist") {
        "the bucket does not exist: create it, or fix `url` in the destination's table"
    } else if refused
        || lower.contains("accessdenied")
        || lower.contains("invalidaccesskeyid")
        || lower.contains("signaturedoesnotmatch")
    {
        "the store refused the credentials: check the destination's access key variables and the key's permissions on the bucket"
    } else if lower.contains("connect")
        || lower.contains("error sending request")
        || lower.contains("dns")
        || lower.contains("timed out")
    {
        "the store could not be reached, or the connection broke: check `endpoint`, the network and that the server is up; the next attempt starts over"
    } else {
        "check the destination's settings and the store's logs"
    };
    format!("{text} ({hint})")
}

/// The client's error text without the store's response body, whose XML may echo the
/// request it refused (an access key id, a canonical request with a session token): only
/// its `<Code>` and `<Message>` are kept.
fn without_response_body(text: &str) -> String {
    let Some(start) = text.find('<') else {
        return text.to_owned();
    };
    let element = |name: &str| {
        let open = format!("<{name}>");
        let from = text.find(&open)? + open.len();
        let to = text[from..].find('<')? + from;
        Some(text[from..to].to_owned())
    };
    let mut kept = text[..start].trim_end().to_owned();
    if let Some(code) = element("Code") {
        kept.push_str(&format!(" {code}"));
    }
    if let Some(message) = element("Message") {
        kept.push_str(&format!(": {message}"));
    }
    kept
}

/// An object being uploaded under a temporary key; published under its final key, or
/// aborted and removed when dropped.
pub struct Upload<'a> {
    destination: &'a ObjectDestination,
    key: String,
    temporary: String,
    path: ObjectPath,
    writer: Option<WriteMultipart>,
    uploaded: bool,
    published: bool,
    position: u64,
}

impl std::fmt::Debug for Upload<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("key", &self.key)
            .field("temporary", &self.temporary)
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

impl Upload<'_> {
    /// How SQL names the final object.
    pub fn display(&self) -> String {
        self.destination.display(&self.key)
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.position
    }

    /// Completes the upload (still under its temporary key). On failure the multipart
    /// upload is aborted (when the store can still be reached).
    pub fn finish(&mut self) -> Result<(), BackupError> {
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        // Parts still in flight fail here, with the writer kept for `drop` to abort;
        // `WriteMultipart::finish` would return such a failure without aborting.
        let flushed = self.destination.wait(writer.wait_for_capacity(0));
        if let Err(e) = flushed {
            return Err(self.destination.error("uploading", &self.key, e));
        }
        let Some(writer) = self.writer.take() else {
            return Ok(());
        };
        self.destination
            .wait(writer.finish())
            .map_err(|e| self.destination.error("uploading", &self.key, e))?;
        self.uploaded = true;
        Ok(())
    }

    /// The uploaded object, to read back before publishing.
    pub fn reopen(&self) -> Result<ObjectReader<'_>, BackupError> {
        self.destination.open_at(self.path.clone(), &self.temporary)
    }

    /// Gives the uploaded object its final key, never replacing an object there.
    pub fn publish(mut self) -> Result<(), BackupError> {
        self.finish()?;
        let to = self.destination.path(&self.key)?;
        match self
            .destination
            .wait(self.destination.store.copy_if_not_exists(&self.path, &to))
        {
            Ok(()) => {}
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => {
                return Err(BackupError::TargetExists {
                    path: self.display().into(),
                });
            }
            Err(e) => return Err(self.destination.error("publishing", &self.key, e)),
        }
        self.published = true;
        if let Err(e) = self.destination.delete_at(&self.path, &self.temporary) {
            tracing::warn!(error = %e, "the temporary copy of a published archive was not deleted");
        }
        Ok(())
    }
}

impl Write for Upload<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let Some(writer) = self.writer.as_mut() else {
            return Err(io::Error::other("the upload is already finished"));
        };
        // At most a part at a time, then wait for room: memory stays at the parts in flight
        // whatever the caller's buffer.
        let n = bytes.len().min(PART_SIZE);
        {
            // Parts are uploaded by tasks spawned on the runtime.
            let _runtime = self.destination.runtime.enter();
            writer.write(&bytes[..n]);
        }
        let waited = self
            .destination
            .runtime
            .block_on(writer.wait_for_capacity(PARTS_IN_FLIGHT));
        waited.map_err(|e| {
            io::Error::other(
                self.destination
                    .error("uploading", &self.key, e)
                    .to_string(),
            )
        })?;
        self.position += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Upload<'_> {
    fn drop(&mut self) {
        if self.published {
            return;
        }
        if let Some(writer) = self.writer.take() {
            // Abandoned parts would be billed until a lifecycle rule removes them.
            if let Err(e) = self.destination.wait(writer.abort()) {
                tracing::warn!(key = %self.temporary, error = %e, "aborting an unfinished upload failed");
            }
        }
        if self.uploaded
            && let Err(e) = self.destination.delete_at(&self.path, &self.temporary)
        {
            tracing::warn!(error = %e, "an unpublished upload was not deleted");
        }
    }
}

/// An object read through ranged requests, with one block buffered.
pub struct ObjectReader<'a> {
    destination: &'a ObjectDestination,
    key: String,
    path: ObjectPath,
    size: u64,
    position: u64,
    block: Vec<u8>,
    block_start: u64,
    /// How much the next fetch asks for.
    next_block: usize,
}

impl std::fmt::Debug for ObjectReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectReader")
            .field("key", &self.key)
            .field("size", &self.size)
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

impl ObjectReader<'_> {
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl Read for ObjectReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.position >= self.size || out.is_empty() {
            return Ok(0);
        }
        let in_block = self.position >= self.block_start
            && self.position < self.block_start + self.block.len() as u64;
        if !in_block {
            // Small first (a header, a central directory), larger as reading goes on.
            let block = self.next_block;
            self.next_block = (self.next_block * 4).min(READ_BLOCK);
            let end = (self.position + block as u64).min(self.size);
            let bytes = self
                .destination
                .wait(
                    self.destination
                        .store
                        .get_range(&self.path, self.position..end),
                )
                .map_err(|e| {
                    io::Error::other(self.destination.error("reading", &self.key, e).to_string())
                })?;
            self.block.clear();
            self.block.extend_from_slice(&bytes);
            self.block_start = self.position;
            if self.block.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{} ended early", self.destination.display(&self.key)),
                ));
            }
        }
        let offset = (self.position - self.block_start) as usize;
        let n = out.len().min(self.block.len() - offset);
        out[..n].copy_from_slice(&self.block[offset..offset + n]);
        self.position += n as u64;
        Ok(n)
    }
}

impl Seek for ObjectReader<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.position.checked_add_signed(d),
        };
        let Some(target) = target else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the object",
            ));
        };
        self.position = target;
        Ok(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_bodies_are_cut_to_their_code_and_message() {
        let text = "Client error with status 403 Forbidden: <?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code><Message>The signature we calculated does not match</Message><AWSAccessKeyId>AKIDSECRETISH</AWSAccessKeyId><CanonicalRequest>PUT x-amz-security-token:TOKEN</CanonicalRequest></Error>";
        let kept = without_response_body(text);
        assert!(
            !kept.contains("AKIDSECRETISH") && !kept.contains("TOKEN"),
            "{kept}"
        );
        assert!(
            kept.contains("SignatureDoesNotMatch") && kept.contains("does not match"),
            "{kept}"
        );
        assert_eq!(without_response_body("plain"), "plain");
    }

    #[test]
    fn keys_are_plain_relative_names() {
        for good in ["d.zip", "daily/d.zip", "a/b/c-1.json.gz"] {
            check_key(good).unwrap();
        }
        for bad in [
            "",
            "/d.zip",
            "daily/",
            "a//b",
            "../d.zip",
            "a/./b",
            ".cairn-tmp-x.zip",
            "a/.cairn-tmp-1/b",
            "a\nb",
        ] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn secrets_come_from_files_and_say_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "s3cr3t\n").unwrap();
        assert_eq!(SecretSource::File(file).read("k").unwrap(), "s3cr3t");
        let err = SecretSource::Env("CAIRN_TEST_SURELY_UNSET_VARIABLE".into())
            .read("[backup.destinations.x] access_key_id")
            .unwrap_err();
        assert!(
            err.contains("CAIRN_TEST_SURELY_UNSET_VARIABLE") && err.contains("access_key_id"),
            "{err}"
        );
    }
}
