//! The server's configuration file: TOML read with serde, checked before anything starts.
//!
//! Rule for relative paths: a relative path in a config file is resolved against the directory
//! that holds that config file, never against the process's working directory. So
//! `config/cairn.toml` saying `data_dir = "../data"` means `<checkout>/data` wherever `cairn`
//! is started from.
//!
//! Every error names the file, the line and column, and the key, so an operator can go straight
//! to the mistake. Nothing falls back to a silent default for a value that was written wrong.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::roles::Role;
use crate::scram::ScramVerifier;

/// The path `cairn serve` reads when no `--config` is given.
pub const DEFAULT_CONFIG_PATH: &str = "config/cairn.toml";

/// A configuration that parsed and passed every check; paths are absolute.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this configuration came from (absolute).
    pub source: PathBuf,
    /// Where the PostgreSQL wire protocol listens.
    pub listen: SocketAddr,
    /// `[server.http] listen`: where `/metrics` and `/health` are served (none if absent).
    pub http_listen: Option<SocketAddr>,
    /// `[server.tls]`: TLS for client connections (none: plain TCP only).
    pub tls: Option<TlsConfig>,
    /// The data directory: databases, credentials, the lock file.
    pub data_dir: PathBuf,
    /// How long a statement waits for another connection's write lock before failing.
    pub busy_timeout: Duration,
    /// How long shutdown waits for running statements to finish.
    pub shutdown_grace: Duration,
    /// Bytes kept allocated on the data disk, released for the admin when it fills (0: none).
    pub reserved_space: u64,
    /// `[server] temp_storage_limit`: bytes of temporary tables per session (`None`: no limit).
    pub temp_storage_limit: Option<u64>,
    /// `[server] mmap_size`: bytes of each database file read through a memory map.
    pub mmap_size: u64,
    /// `[server] max_message_size`: the largest message a logged-in client may send.
    pub max_message_size: usize,
    /// `[server] max_connections`: sessions at once, all users together (admins have
    /// `RESERVED_FOR_ADMIN` more, so that an operator can always log in).
    pub max_connections: usize,
    /// `[server] statement_timeout`, `lock_timeout`, `idle_in_transaction_session_timeout`.
    pub timeouts: crate::sql::settings::Timeouts,
    /// The users who may log in, in the order of their names.
    pub users: Vec<UserConfig>,
    /// The only directory plugin libraries are loaded from.
    pub plugin_dir: PathBuf,
    /// The plugins to load at start-up, in the order of their names.
    pub plugins: Vec<PluginDecl>,
    /// Where SQL may write and read backup archives.
    pub backup: crate::backup::PathRules,
    /// `[backup.destinations.NAME]`: object storage SQL names as `'NAME:key'`, by name.
    pub destinations: Vec<crate::backup::destination::S3Settings>,
    /// `[backup.continuous]`: continuous archiving, when configured.
    pub continuous: Option<crate::backup::continuous::ContinuousConfig>,
    /// `[backup] default_destination`: the collection `BACKUP DATABASE [name]` with no `TO`
    /// writes to (QuestDB's configured backup root), when set.
    pub default_destination: Option<String>,
    /// `[backup.keys.NAME]`: the keys encrypted archives are written and read with.
    pub keys: Vec<crate::backup::encryption::KeySettings>,
}

/// One `[plugins.NAME]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginDecl {
    /// The plugin's name; the library's descriptor must carry the same.
    pub name: String,
    pub library: LibrarySource,
    /// A disabled plugin is listed by `SHOW PLUGINS` but not loaded.
    pub enabled: bool,
    pub config: PluginConfigSource,
    /// How long its `start` and `stop` may take (`None`: no limit; "0" in the config).
    pub start_timeout: Option<Duration>,
    /// What its SQL and host calls may do (`role = "…"`; see [`PluginDecl::default_role`]).
    pub role: Role,
}

impl PluginDecl {
    /// The role of a plugin that declares none: the least its calls need. The bundled
    /// automatic-backup plugin (builtin or loaded from its file) backs up, so `backup`; any
    /// other plugin `readonly` (declare
    /// `role = "readwrite"` for one that writes, `"backup"` for one that backs up, `"admin"`
    /// for one that manages databases or plugins).
    pub fn default_role(name: &str) -> Role {
        if name == AUTOMATIC_BACKUP {
            Role::Backup
        } else {
            Role::Readonly
        }
    }
}

/// The name of the bundled automatic-backup plugin.
const AUTOMATIC_BACKUP: &str = "automatic_backup";

/// The default `[plugins.NAME] start_timeout`.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a plugin's code comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LibrarySource {
    /// Linked into the server.
    Builtin,
    /// A file name in the plugin directory.
    File(String),
}

/// Where a plugin's own config comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginConfigSource {
    /// No config: the plugin gets an empty table.
    None,
    /// `[plugins.NAME.config]`, as TOML text.
    Inline(String),
    /// `config_file = "…"`: read (again) every time the plugin is loaded or reloaded.
    File(PathBuf),
}

/// One `[users.NAME]` table.
#[derive(Debug, Clone)]
pub struct UserConfig {
    pub name: String,
    pub role: Role,
    pub credential: CredentialSource,
    /// At most this many sessions of this user at once (`None`: only the server's limit).
    pub max_connections: Option<usize>,
    /// The timeouts this user's sessions start with instead of the server's.
    pub timeouts: Vec<(crate::sql::settings::Setting, Option<Duration>)>,
}

/// Where a user's password comes from. The config never holds a plaintext password.
#[derive(Debug, Clone)]
pub enum CredentialSource {
    /// Read the password from this environment variable at start-up.
    Env(String),
    /// A SCRAM-SHA-256 verifier printed by `cairn passwd`.
    Scram(ScramVerifier),
}

/// A configuration file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}{}", key.as_ref().map(|k| format!(" (key `{k}`)")).unwrap_or_default())]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        key: Option<String>,
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    server: RawServer,
    #[serde(default)]
    users: BTreeMap<String, Spanned<RawUser>>,
    #[serde(default)]
    plugins: BTreeMap<String, Spanned<RawPlugin>>,
    #[serde(default)]
    backup: RawBackup,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackup {
    #[serde(default = "default_backup_dir")]
    directory: Spanned<String>,
    #[serde(default)]
    allowed_directories: Vec<Spanned<String>>,
    #[serde(default)]
    destinations: BTreeMap<String, Spanned<RawDestination>>,
    continuous: Option<Spanned<RawContinuous>>,
    default_destination: Option<Spanned<String>>,
    #[serde(default)]
    keys: BTreeMap<String, Spanned<RawKey>>,
}

/// One `[backup.keys.NAME]` table: where the passphrase of the key archives name `NAME` is
/// read from (never the passphrase itself).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    passphrase_env: Option<Spanned<String>>,
    key_file: Option<Spanned<String>>,
}

impl Default for RawBackup {
    fn default() -> RawBackup {
        RawBackup {
            directory: default_backup_dir(),
            allowed_directories: Vec::new(),
            destinations: BTreeMap::new(),
            continuous: None,
            default_destination: None,
            keys: BTreeMap::new(),
        }
    }
}

/// `[backup.continuous]`: the write-ahead log shipped to a collection between base archives.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContinuous {
    destination: Spanned<String>,
    interval: Option<Spanned<String>>,
    databases: Option<Spanned<Vec<String>>>,
    base_every: Option<Spanned<String>>,
    keep_bases: Option<Spanned<u64>>,
    max_wal: Option<Spanned<RawSize>>,
}

/// `[server.tls]`: TLS for client connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// A PEM file: the server's certificate, then any intermediates.
    pub certificate: PathBuf,
    /// A PEM file: its private key.
    pub private_key: PathBuf,
    /// Clients that do not ask for TLS are refused.
    pub required: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    certificate: Spanned<String>,
    private_key: Spanned<String>,
    #[serde(default)]
    required: bool,
}

/// `[server.http]`: the metrics and health endpoint.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: Spanned<String>,
}

/// One `[backup.destinations.NAME]` table: an S3 bucket (and prefix) on AWS or any server
/// that speaks its API. Secrets are named, never written here.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDestination {
    url: Spanned<String>,
    endpoint: Option<Spanned<String>>,
    region: Option<Spanned<String>>,
    access_key_id_env: Option<Spanned<String>>,
    access_key_id_file: Option<Spanned<String>>,
    secret_access_key_env: Option<Spanned<String>>,
    secret_access_key_file: Option<Spanned<String>>,
}

/// Checks a key naming a collection: `NAME:prefix` of a configured destination, or a
/// directory.
fn collection(
    key: &str,
    value: &Spanned<String>,
    destinations: &[crate::backup::destination::S3Settings],
    located: &Locator<'_>,
) -> Result<String, ConfigError> {
    let destination = value.get_ref().trim().to_owned();
    if destination.is_empty() {
        return Err(located.at(
            value,
            format!("{key} is empty; write a collection: \"NAME:prefix\" of a [backup.destinations.NAME], or a directory under the backup directory"),
        ));
    }
    if let Some((name, _)) = cairn_plugin_api::backup_options::split_destination(&destination)
        && name != crate::backup::destination::LOCAL
        && !destinations.iter().any(|d| d.name == name)
    {
        return Err(located.at(
            value,
            format!("{key} names {name:?}, which is not a [backup.destinations.NAME] table here"),
        ));
    }
    Ok(destination)
}

/// Checks `[backup.continuous]`.
fn continuous(
    raw: &RawContinuous,
    destinations: &[crate::backup::destination::S3Settings],
    located: &Locator<'_>,
) -> Result<crate::backup::continuous::ContinuousConfig, ConfigError> {
    let destination = collection(
        "[backup.continuous] destination",
        &raw.destination,
        destinations,
        located,
    )?;
    let duration = |key: &str, value: &Option<Spanned<String>>, default: Duration| match value {
        None => Ok(default),
        Some(text) => match crate::sql::settings::parse_duration(text.get_ref()) {
            Ok(Some(d)) => Ok(d),
            Ok(None) => Err(located.at(
                text,
                format!("[backup.continuous] {key} must be more than 0"),
            )),
            Err(m) => Err(located.at(text, format!("[backup.continuous] {key}: {m}"))),
        },
    };
    let interval = duration("interval", &raw.interval, Duration::from_secs(1))?;
    if !(Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&interval) {
        let at = raw
            .interval
            .as_ref()
            .map_or(raw.destination.span().start, |i| i.span().start);
        return Err(located.error(
            at,
            "[backup.continuous] interval must be from 100ms to 1h".into(),
        ));
    }
    let base_every = duration("base_every", &raw.base_every, Duration::from_secs(86_400))?;
    if base_every < interval {
        let at = raw
            .base_every
            .as_ref()
            .map_or(raw.destination.span().start, |i| i.span().start);
        return Err(located.error(
            at,
            "[backup.continuous] base_every must not be shorter than interval".into(),
        ));
    }
    let databases = match &raw.databases {
        None => vec!["*".to_owned()],
        Some(list) => {
            for name in list.get_ref() {
                if name != "*" && crate::catalog::validate_name(name).is_err() {
                    return Err(located.at(
                        list,
                        format!("[backup.continuous] databases: {name:?} is not a database name (or \"*\" for all)"),
                    ));
                }
            }
            if list.get_ref().is_empty() {
                return Err(located.at(list, "[backup.continuous] databases is empty; name databases, or write [\"*\"] for all (or remove [backup.continuous])".into()));
            }
            list.get_ref().clone()
        }
    };
    let keep_bases = match &raw.keep_bases {
        None => 2,
        Some(n) if *n.get_ref() >= 1 => *n.get_ref() as usize,
        Some(n) => {
            return Err(located.at(
                n,
                "[backup.continuous] keep_bases must be at least 1".into(),
            ));
        }
    };
    let max_wal = match &raw.max_wal {
        None => 1 << 30,
        Some(value) => {
            let bytes = match value.get_ref() {
                RawSize::Bytes(n) => u64::try_from(*n).ok(),
                RawSize::Text(text) => cairn_plugin_api::backup_options::parse_size(text).ok(),
            };
            match bytes {
                Some(b) if b >= 16 << 20 => b,
                _ => {
                    return Err(located.at(
                        value,
                        "[backup.continuous] max_wal must be a size of at least 16MiB (\"1GiB\")"
                            .into(),
                    ));
                }
            }
        }
    };
    Ok(crate::backup::continuous::ContinuousConfig {
        destination,
        interval,
        databases,
        base_every,
        keep_bases,
        max_wal,
    })
}

fn default_backup_dir() -> Spanned<String> {
    Spanned::new(0..0, "backups".into())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlugin {
    library: Spanned<String>,
    #[serde(default = "enabled_by_default")]
    enabled: bool,
    config_file: Option<Spanned<String>>,
    config: Option<toml::Table>,
    start_timeout: Option<Spanned<RawSetting>>,
    role: Option<Spanned<Role>>,
}

fn enabled_by_default() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Spanned<String>,
    #[serde(default)]
    http: Option<RawHttp>,
    #[serde(default)]
    tls: Option<RawTls>,
    data_dir: Spanned<String>,
    #[serde(default = "default_busy_timeout_ms")]
    busy_timeout_ms: Spanned<u64>,
    #[serde(default = "default_shutdown_grace_ms")]
    shutdown_grace_ms: u64,
    #[serde(default = "default_plugin_dir")]
    plugin_dir: String,
    reserved_space: Option<Spanned<RawSize>>,
    max_message_size: Option<Spanned<RawSize>>,
    temp_storage_limit: Option<Spanned<RawSize>>,
    mmap_size: Option<Spanned<RawSize>>,
    #[serde(default = "default_max_connections")]
    max_connections: Spanned<u64>,
    statement_timeout: Option<Spanned<RawSetting>>,
    lock_timeout: Option<Spanned<RawSetting>>,
    idle_in_transaction_session_timeout: Option<Spanned<RawSetting>>,
}

/// A time setting as milliseconds or as text ("5s").
#[derive(Deserialize)]
#[serde(untagged)]
enum RawSetting {
    Millis(u64),
    Text(String),
}

/// The default `[server] temp_storage_limit`.
const DEFAULT_TEMP_STORAGE_LIMIT: u64 = 1 << 30;

/// The default `[server] mmap_size`.
const DEFAULT_MMAP_SIZE: u64 = 1 << 30;
/// SQLite's own ceiling on a memory map (`SQLITE_MAX_MMAP_SIZE`); it lowers larger values
/// without saying so.
const MAX_MMAP_SIZE: u64 = 0x7fff_0000;

/// PostgreSQL's default.
fn default_max_connections() -> Spanned<u64> {
    Spanned::new(0..0, 100)
}

/// A size as bytes or as text ("64MiB").
#[derive(Deserialize)]
#[serde(untagged)]
enum RawSize {
    Bytes(i64),
    Text(String),
}

fn default_plugin_dir() -> String {
    "plugins".into()
}

fn default_busy_timeout_ms() -> Spanned<u64> {
    Spanned::new(0..0, 5_000)
}

fn default_shutdown_grace_ms() -> u64 {
    10_000
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    role: Role,
    password_env: Option<Spanned<String>>,
    scram: Option<Spanned<String>>,
    max_connections: Option<Spanned<u64>>,
    statement_timeout: Option<Spanned<RawSetting>>,
    lock_timeout: Option<Spanned<RawSetting>>,
    idle_in_transaction_session_timeout: Option<Spanned<RawSetting>>,
}

impl Config {
    /// Reads and checks the config file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let absolute = std::path::absolute(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, &absolute)
    }

    /// Parses config text as if it had been read from `path` (absolute).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let located = Locator { text, path };
        let raw: RawConfig = toml::from_str(text).map_err(|err| {
            let offset = err.span().map(|s| s.start).unwrap_or(0);
            located.error(offset, err.message().to_owned())
        })?;
        let base = path.parent().unwrap_or(Path::new("/"));

        let listen =
            parse_listen(&raw.server.listen).map_err(|m| located.at(&raw.server.listen, m))?;
        let http_listen = match &raw.server.http {
            Some(http) => {
                Some(parse_listen(&http.listen).map_err(|m| located.at(&http.listen, m))?)
            }
            None => None,
        };
        let tls = match &raw.server.tls {
            Some(tls) => {
                let path = |key: &Spanned<String>| {
                    if key.get_ref().trim().is_empty() {
                        Err(located.at(key, "a path to a PEM file is needed here".into()))
                    } else {
                        Ok(normalize(&base.join(key.get_ref())))
                    }
                };
                Some(TlsConfig {
                    certificate: path(&tls.certificate)?,
                    private_key: path(&tls.private_key)?,
                    required: tls.required,
                })
            }
            None => None,
        };
        if raw.server.data_dir.get_ref().trim().is_empty() {
            return Err(located.at(&raw.server.data_dir, "data_dir must not be empty".into()));
        }
        let data_dir = base.join(raw.server.data_dir.get_ref());
        let data_dir = normalize(&data_dir);
        if *raw.server.busy_timeout_ms.get_ref() == 0 {
            return Err(located.at(
                &raw.server.busy_timeout_ms,
                "busy_timeout_ms must be at least 1: with 0, concurrent writers fail at once with \"database is locked\"".into(),
            ));
        }

        let mut users = Vec::with_capacity(raw.users.len());
        for (name, user) in &raw.users {
            let span = user.span();
            let user = user.get_ref();
            let credential = match (&user.password_env, &user.scram) {
                (Some(env), None) => {
                    let var = env.get_ref();
                    if var.is_empty() || var.contains('=') || var.contains('\0') {
                        return Err(located.at(
                            env,
                            format!("password_env must name an environment variable, got {var:?}"),
                        ));
                    }
                    CredentialSource::Env(var.clone())
                }
                (None, Some(secret)) => CredentialSource::Scram(
                    ScramVerifier::parse(secret.get_ref()).map_err(|m| {
                        located.at(
                            secret,
                            format!("{m}; run `cairn passwd` to print a valid secret"),
                        )
                    })?,
                ),
                (Some(env), Some(_)) => {
                    return Err(located.at(
                        env,
                        format!("user {name:?} names both password_env and scram; keep one"),
                    ));
                }
                (None, None) => {
                    return Err(located.error(
                        span.start,
                        format!(
                            "user {name:?} has no password: add password_env = \"VAR\" or scram = \"…\" (printed by `cairn passwd`)"
                        ),
                    ));
                }
            };
            if let Err(message) = crate::roles::validate_user_name(name) {
                return Err(located.error(span.start, message));
            }
            let max_connections = match &user.max_connections {
                Some(n) if *n.get_ref() == 0 => {
                    return Err(located.at(
                        n,
                        format!("user {name:?}: max_connections must be at least 1 (remove the user to keep it out)"),
                    ));
                }
                Some(n) => Some(*n.get_ref() as usize),
                None => None,
            };
            let timeouts = located.settings([
                &user.statement_timeout,
                &user.lock_timeout,
                &user.idle_in_transaction_session_timeout,
            ])?;
            users.push(UserConfig {
                name: name.clone(),
                role: user.role,
                credential,
                max_connections,
                timeouts,
            });
        }

        let mut plugins = Vec::with_capacity(raw.plugins.len());
        for (name, plugin) in &raw.plugins {
            let span = plugin.span();
            let plugin = plugin.get_ref();
            if let Err(message) = crate::catalog::validate_identifier("plugin", name) {
                return Err(located.error(span.start, message));
            }
            let file = plugin.library.get_ref();
            let library = if file == "builtin" {
                LibrarySource::Builtin
            } else if file.is_empty() || file.contains('/') || file == "." || file == ".." {
                return Err(located.at(
                    &plugin.library,
                    format!(
                        "library must be a file name in the plugin directory (or \"builtin\"), got {file:?}; plugins load only from plugin_dir"
                    ),
                ));
            } else {
                LibrarySource::File(file.clone())
            };
            let config = match (&plugin.config_file, &plugin.config) {
                (Some(file), Some(_)) => {
                    return Err(located.at(
                        file,
                        format!(
                            "plugin {name:?} has both config_file and a config table; keep one"
                        ),
                    ));
                }
                (Some(file), None) => {
                    PluginConfigSource::File(normalize(&base.join(file.get_ref())))
                }
                (None, Some(table)) => PluginConfigSource::Inline(
                    toml::to_string(table).map_err(|e| located.error(span.start, e.to_string()))?,
                ),
                (None, None) => PluginConfigSource::None,
            };
            let start_timeout = match &plugin.start_timeout {
                None => Some(DEFAULT_START_TIMEOUT),
                Some(value) => {
                    let text = match value.get_ref() {
                        RawSetting::Millis(n) => n.to_string(),
                        RawSetting::Text(t) => t.clone(),
                    };
                    crate::sql::settings::parse_duration(&text)
                        .map_err(|m| located.at(value, format!("start_timeout: {m}")))?
                }
            };
            let role = plugin
                .role
                .as_ref()
                .map_or_else(|| PluginDecl::default_role(name), |r| *r.get_ref());
            plugins.push(PluginDecl {
                name: name.clone(),
                library,
                enabled: plugin.enabled,
                config,
                start_timeout,
                role,
            });
        }

        let mut directories = Vec::new();
        for dir in std::iter::once(&raw.backup.directory).chain(&raw.backup.allowed_directories) {
            if dir.get_ref().trim().is_empty() {
                return Err(located.at(dir, "a backup directory must not be empty".into()));
            }
            let resolved = normalize(&base.join(dir.get_ref()));
            if resolved == Path::new("/") {
                return Err(located.at(
                    dir,
                    "the root directory cannot hold backups: name a directory for them".into(),
                ));
            }
            directories.push(resolved);
        }
        let mut destinations = Vec::with_capacity(raw.backup.destinations.len());
        for (name, table) in &raw.backup.destinations {
            let span = table.span();
            destinations.push(
                destination(name, table.get_ref(), base)
                    .map_err(|(at, message)| located.error(at.unwrap_or(span.start), message))?,
            );
        }
        let mut keys = Vec::with_capacity(raw.backup.keys.len());
        for (name, table) in &raw.backup.keys {
            use crate::backup::destination::SecretSource;
            let span = table.span();
            crate::catalog::validate_identifier("backup key", name)
                .map_err(|m| located.error(span.start, m))?;
            let source = match (&table.get_ref().passphrase_env, &table.get_ref().key_file) {
                (Some(env), None) if !env.get_ref().trim().is_empty() => {
                    SecretSource::Env(env.get_ref().clone())
                }
                (None, Some(file)) if !file.get_ref().trim().is_empty() => {
                    SecretSource::File(normalize(&base.join(file.get_ref())))
                }
                (Some(_), Some(value)) => {
                    return Err(located.at(
                        value,
                        format!(
                            "[backup.keys.{name}] names both passphrase_env and key_file; keep one"
                        ),
                    ));
                }
                (Some(value), None) | (None, Some(value)) => {
                    return Err(
                        located.at(value, format!("[backup.keys.{name}]: the value is empty"))
                    );
                }
                (None, None) => {
                    return Err(located.error(
                        span.start,
                        format!("[backup.keys.{name}] needs passphrase_env = \"VAR\" (an environment variable of the server) or key_file = \"path\" (its first line is the passphrase)"),
                    ));
                }
            };
            keys.push(crate::backup::encryption::KeySettings {
                name: name.clone(),
                source,
            });
        }
        let continuous = raw
            .backup
            .continuous
            .as_ref()
            .map(|table| continuous(table.get_ref(), &destinations, &located))
            .transpose()?;
        let default_destination = raw
            .backup
            .default_destination
            .as_ref()
            .map(|value| {
                collection(
                    "[backup] default_destination",
                    value,
                    &destinations,
                    &located,
                )
            })
            .transpose()?;
        let backup_directory = directories.remove(0);
        let backup = crate::backup::PathRules {
            directory: backup_directory,
            allowed: directories,
        };

        let size = |key: &str, value: &Spanned<RawSize>| {
            let bytes = match value.get_ref() {
                RawSize::Bytes(n) => u64::try_from(*n)
                    .map_err(|_| format!("{key} is {n}; write a size such as \"64MiB\"")),
                RawSize::Text(text) => cairn_plugin_api::backup_options::parse_size(text)
                    .map_err(|e| format!("{key}: {}", e.message())),
            };
            bytes.map_err(|m| located.at(value, m))
        };
        let reserved_space = match &raw.server.reserved_space {
            None => crate::disk_space::DEFAULT_RESERVE,
            Some(value) => size("reserved_space", value)?,
        };
        let max_message_size = match &raw.server.max_message_size {
            None => crate::pg::limits::DEFAULT_MESSAGE_LIMIT,
            Some(value) => {
                let bytes = size("max_message_size", value)?;
                if !(crate::pg::limits::BEFORE_LOGIN_LIMIT as u64..=1 << 30).contains(&bytes) {
                    return Err(located.at(
                        value,
                        "max_message_size must be between 8KiB and 1GiB (PostgreSQL's own limit)"
                            .into(),
                    ));
                }
                bytes as usize
            }
        };
        let temp_storage_limit = match &raw.server.temp_storage_limit {
            None => Some(DEFAULT_TEMP_STORAGE_LIMIT),
            Some(value) => Some(size("temp_storage_limit", value)?).filter(|n| *n > 0),
        };
        let mmap_size = match &raw.server.mmap_size {
            None => DEFAULT_MMAP_SIZE,
            Some(value) => {
                let bytes = size("mmap_size", value)?;
                if bytes > MAX_MMAP_SIZE {
                    return Err(located.at(
                        value,
                        "mmap_size must be at most 2047MiB (SQLite maps no more); \"0\" maps nothing".into(),
                    ));
                }
                bytes
            }
        };
        let timeouts = located.settings([
            &raw.server.statement_timeout,
            &raw.server.lock_timeout,
            &raw.server.idle_in_transaction_session_timeout,
        ])?;
        let mut timeouts_all = crate::sql::settings::Timeouts::default();
        for (setting, value) in timeouts {
            timeouts_all.set(setting, value);
        }
        let timeouts = timeouts_all;
        let max_connections = *raw.server.max_connections.get_ref();
        if max_connections == 0 {
            return Err(located.at(
                &raw.server.max_connections,
                "max_connections must be at least 1".into(),
            ));
        }

        Ok(Config {
            backup,
            keys,
            destinations,
            continuous,
            default_destination,
            source: path.to_owned(),
            reserved_space,
            max_message_size,
            temp_storage_limit,
            mmap_size,
            max_connections: max_connections as usize,
            timeouts,
            plugin_dir: normalize(&base.join(&raw.server.plugin_dir)),
            plugins,
            listen,
            http_listen,
            tls,
            data_dir,
            busy_timeout: Duration::from_millis(*raw.server.busy_timeout_ms.get_ref()),
            shutdown_grace: Duration::from_millis(raw.server.shutdown_grace_ms),
            users,
        })
    }
}

/// Checks one destination table; an error carries where it is (when it is one value).
fn destination(
    name: &str,
    raw: &RawDestination,
    base: &Path,
) -> Result<crate::backup::destination::S3Settings, (Option<usize>, String)> {
    use crate::backup::destination::{LOCAL, S3Settings, SecretSource};
    let at = |value: &Spanned<String>, message: String| (Some(value.span().start), message);
    crate::catalog::validate_identifier("backup destination", name).map_err(|m| (None, m))?;
    if name == LOCAL {
        return Err((
            None,
            "the destination \"local\" is the backup directory itself; give this one another name"
                .into(),
        ));
    }
    let url = raw.url.get_ref();
    let Some(rest) = url.strip_prefix("s3://") else {
        return Err(at(
            &raw.url,
            format!(
                "url {url:?} must be s3://bucket or s3://bucket/prefix (S3 and S3-compatible stores)"
            ),
        ));
    };
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    if !bucket_ok {
        return Err(at(
            &raw.url,
            format!(
                "url {url:?}: the bucket name {bucket:?} must be 3 to 63 lower-case letters, digits, '-' or '.'"
            ),
        ));
    }
    let prefix = prefix.trim_matches('/');
    if prefix.split('/').any(|p| p == "." || p == "..") || prefix.contains("//") {
        return Err(at(
            &raw.url,
            format!("url {url:?}: the prefix must be plain names separated by '/'"),
        ));
    }
    let endpoint = match &raw.endpoint {
        Some(e) if e.get_ref().starts_with("http://") || e.get_ref().starts_with("https://") => {
            Some(e.get_ref().trim_end_matches('/').to_owned())
        }
        Some(e) => {
            return Err(at(
                e,
                format!(
                    "endpoint {:?} must be an http:// or https:// URL, such as \"http://127.0.0.1:9000\"",
                    e.get_ref()
                ),
            ));
        }
        None => None,
    };
    let secret = |env: &Option<Spanned<String>>,
                  file: &Option<Spanned<String>>,
                  key: &str|
     -> Result<Option<SecretSource>, (Option<usize>, String)> {
        match (env, file) {
            (Some(env), Some(_)) => Err(at(
                env,
                format!("{key}_env and {key}_file both given; keep one"),
            )),
            (Some(env), None) if env.get_ref().trim().is_empty() => Err(at(
                env,
                format!("{key}_env must name an environment variable"),
            )),
            (Some(env), None) => Ok(Some(SecretSource::Env(env.get_ref().clone()))),
            (None, Some(file)) => Ok(Some(SecretSource::File(normalize(
                &base.join(file.get_ref()),
            )))),
            (None, None) => Ok(None),
        }
    };
    let id = secret(
        &raw.access_key_id_env,
        &raw.access_key_id_file,
        "access_key_id",
    )?;
    let key = secret(
        &raw.secret_access_key_env,
        &raw.secret_access_key_file,
        "secret_access_key",
    )?;
    let keys = match (id, key) {
        (Some(id), Some(key)) => Some((id, key)),
        (None, None) => None,
        _ => {
            return Err((
                None,
                format!(
                    "destination {name:?}: give both access_key_id_env (or _file) and secret_access_key_env (or _file), or neither to use the environment's AWS credentials"
                ),
            ));
        }
    };
    Ok(S3Settings {
        name: name.to_owned(),
        bucket: bucket.to_owned(),
        prefix: prefix.to_owned(),
        endpoint,
        region: raw
            .region
            .as_ref()
            .map_or_else(|| "us-east-1".to_owned(), |r| r.get_ref().clone()),
        keys,
    })
}

fn parse_listen(value: &Spanned<String>) -> Result<SocketAddr, String> {
    value.get_ref().parse::<SocketAddr>().map_err(|_| {
        format!(
            "invalid listen address {:?}: write an IP address and a port, such as \"127.0.0.1:5480\" or \"[::1]:5480\"",
            value.get_ref()
        )
    })
}

/// Removes `.` and `..` components without touching the file system (the directory may not
/// exist yet).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Turns byte offsets into `file:line:column` errors that also name the key.
struct Locator<'a> {
    text: &'a str,
    path: &'a Path,
}

impl Locator<'_> {
    fn at<T>(&self, spanned: &Spanned<T>, message: String) -> ConfigError {
        self.error(spanned.span().start, message)
    }

    /// `statement_timeout`, `lock_timeout` and `idle_in_transaction_session_timeout`, in
    /// that order, as far as they are given.
    fn settings(
        &self,
        values: [&Option<Spanned<RawSetting>>; 3],
    ) -> Result<Vec<(crate::sql::settings::Setting, Option<Duration>)>, ConfigError> {
        let mut out = Vec::new();
        for (setting, value) in crate::sql::settings::Setting::ALL.into_iter().zip(values) {
            let Some(value) = value else { continue };
            let text = match value.get_ref() {
                RawSetting::Millis(n) => n.to_string(),
                RawSetting::Text(t) => t.clone(),
            };
            let parsed = crate::sql::settings::parse_duration(&text)
                .map_err(|m| self.at(value, format!("{}: {m}", setting.name())))?;
            out.push((setting, parsed));
        }
        Ok(out)
    }

    fn error(&self, offset: usize, message: String) -> ConfigError {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let column = before[line_start..].chars().count() + 1;
        ConfigError::Invalid {
            path: self.path.to_owned(),
            line,
            column,
            key: self.key_at(line_start),
            message,
        }
    }

    /// The dotted key written on the line starting at `line_start`, prefixed by the table
    /// header above it.
    fn key_at(&self, line_start: usize) -> Option<String> {
        let line = self.text[line_start..].lines().next().unwrap_or("");
        let table = self.text[..line_start]
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| l.starts_with('['))
            .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_owned());
        let own = line
            .split_once('=')
            .map(|(k, _)| k.trim().trim_matches('"').to_owned())
            .filter(|k| !k.is_empty() && !k.starts_with('#'));
        let header = line.trim();
        if header.starts_with('[') {
            return Some(
                header
                    .trim_matches(|c| c == '[' || c == ']')
                    .trim()
                    .to_owned(),
            );
        }
        match (table, own) {
            (Some(t), Some(k)) => Some(format!("{t}.{k}")),
            (None, Some(k)) => Some(k),
            (Some(t), None) => Some(t),
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[server]
listen = "127.0.0.1:5480"
data_dir = "../data"

[users.admin]
role = "admin"
password_env = "CAIRN_ADMIN_PASSWORD"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/cairn/cairn.toml"))
    }

    fn invalid(text: &str) -> (usize, usize, Option<String>, String) {
        match parse(text) {
            Err(ConfigError::Invalid {
                line,
                column,
                key,
                message,
                ..
            }) => (line, column, key, message),
            other => panic!("expected an invalid-config error, got {other:?}"),
        }
    }

    #[test]
    fn tls_files_are_relative_to_the_config_and_both_are_needed() {
        assert_eq!(parse(GOOD).unwrap().tls, None);
        let config = parse(&format!(
            "{GOOD}\n[server.tls]\ncertificate = \"tls/server.crt\"\nprivate_key = \"/etc/k.pem\"\n"
        ))
        .unwrap();
        let tls = config.tls.unwrap();
        assert_eq!(tls.certificate, Path::new("/etc/cairn/tls/server.crt"));
        assert_eq!(tls.private_key, Path::new("/etc/k.pem"));
        assert!(!tls.required);
        let (_, _, key, message) = invalid(&format!("{GOOD}\n[server.tls]\ncertificate = \"a\"\n"));
        assert_eq!(key.as_deref(), Some("server.tls"));
        assert!(message.contains("private_key"), "{message}");
    }

    #[test]
    fn the_http_endpoint_is_optional_and_its_address_checked() {
        assert_eq!(parse(GOOD).unwrap().http_listen, None);
        let config = parse(&format!(
            "{GOOD}\n[server.http]\nlisten = \"127.0.0.1:9187\"\n"
        ))
        .unwrap();
        assert_eq!(config.http_listen, Some("127.0.0.1:9187".parse().unwrap()));
        let (_, _, key, _) = invalid(&format!("{GOOD}\n[server.http]\nlisten = \"nowhere\"\n"));
        assert_eq!(key.as_deref(), Some("server.http.listen"));
    }

    #[test]
    fn destinations_are_checked_and_name_their_secrets() {
        use crate::backup::destination::SecretSource;
        let text = format!(
            "{GOOD}\n[backup.destinations.offsite]\nurl = \"s3://cairn-backups/prod/\"\nendpoint = \"http://127.0.0.1:9000/\"\naccess_key_id_env = \"AK\"\nsecret_access_key_file = \"s3.secret\"\n"
        );
        let config = parse(&text).unwrap();
        let d = &config.destinations[0];
        assert_eq!(
            (d.name.as_str(), d.bucket.as_str(), d.prefix.as_str()),
            ("offsite", "cairn-backups", "prod")
        );
        assert_eq!(d.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(d.region, "us-east-1");
        assert_eq!(
            d.keys,
            Some((
                SecretSource::Env("AK".into()),
                SecretSource::File(PathBuf::from("/etc/cairn/s3.secret"))
            ))
        );
        for (table, says) in [
            (
                "[backup.destinations.local]\nurl = \"s3://bkt\"\n",
                "backup directory itself",
            ),
            (
                "[backup.destinations.x]\nurl = \"https://bkt\"\n",
                "must be s3://bucket",
            ),
            ("[backup.destinations.x]\nurl = \"s3://B\"\n", "bucket name"),
            (
                "[backup.destinations.x]\nurl = \"s3://bkt\"\nendpoint = \"127.0.0.1:9000\"\n",
                "http:// or https://",
            ),
            (
                "[backup.destinations.x]\nurl = \"s3://bkt\"\naccess_key_id_env = \"A\"\n",
                "give both",
            ),
            (
                "[backup.destinations.x]\nurl = \"s3://bkt\"\nsecret = \"no\"\n",
                "unknown field",
            ),
        ] {
            let (_, _, _, message) = invalid(&format!("{GOOD}\n{table}"));
            assert!(message.contains(says), "{table}: {message}");
        }
    }

    #[test]
    fn the_default_destination_names_a_collection_here() {
        let config = parse(&format!(
            "{GOOD}\n[backup]\ndefault_destination = \"auto\"\n"
        ))
        .unwrap();
        assert_eq!(config.default_destination.as_deref(), Some("auto"));
        assert!(parse(GOOD).unwrap().default_destination.is_none());
        for (value, says) in [
            ("\"\"", "default_destination is empty"),
            ("\"nowhere:auto\"", "not a [backup.destinations.NAME]"),
        ] {
            let (_, _, _, message) = invalid(&format!(
                "{GOOD}\n[backup]\ndefault_destination = {value}\n"
            ));
            assert!(message.contains(says), "{value}: {message}");
        }
    }

    #[test]
    fn continuous_archiving_is_checked_with_its_key_named() {
        let config = parse(&format!(
            "{GOOD}\n[backup.continuous]\ndestination = \"wal\"\n"
        ))
        .unwrap();
        let c = config.continuous.unwrap();
        assert_eq!(c.interval, Duration::from_secs(1));
        assert_eq!(c.base_every, Duration::from_secs(86_400));
        assert_eq!((c.keep_bases, c.max_wal), (2, 1 << 30));
        assert_eq!(c.databases, ["*"]);
        assert!(parse(GOOD).unwrap().continuous.is_none());
        for (table, says) in [
            ("destination = \"\"", "destination is empty"),
            (
                "destination = \"nowhere:wal\"",
                "not a [backup.destinations.NAME]",
            ),
            (
                "destination = \"wal\"\ninterval = \"10ms\"",
                "from 100ms to 1h",
            ),
            ("destination = \"wal\"\ninterval = \"soon\"", "interval"),
            (
                "destination = \"wal\"\ninterval = \"10s\"\nbase_every = \"1s\"",
                "base_every must not be shorter",
            ),
            (
                "destination = \"wal\"\ndatabases = []",
                "databases is empty",
            ),
            (
                "destination = \"wal\"\ndatabases = [\"a b\"]",
                "not a database name",
            ),
            (
                "destination = \"wal\"\nkeep_bases = 0",
                "keep_bases must be at least 1",
            ),
            (
                "destination = \"wal\"\nmax_wal = \"1MiB\"",
                "max_wal must be a size of at least 16MiB",
            ),
            ("destination = \"wal\"\nevery = 1", "unknown field"),
        ] {
            let (_, _, _, message) = invalid(&format!("{GOOD}\n[backup.continuous]\n{table}\n"));
            assert!(message.contains(says), "{table}: {message}");
        }
    }

    #[test]
    fn backup_directories_resolve_against_the_config_file() {
        let config = parse(GOOD).unwrap();
        assert_eq!(config.backup.directory, Path::new("/etc/cairn/backups"));
        assert!(config.backup.allowed.is_empty());
        let text = format!(
            "{GOOD}\n[backup]\ndirectory = \"../archives\"\nallowed_directories = [\"/mnt/nas\"]\n"
        );
        let config = parse(&text).unwrap();
        assert_eq!(config.backup.directory, Path::new("/etc/archives"));
        assert_eq!(config.backup.allowed, [PathBuf::from("/mnt/nas")]);
        let (line, _, key, message) = invalid(&format!(
            "{GOOD}\n[backup]\nallowed_directories = [\"/\"]\n"
        ));
        assert_eq!(line, 11);
        assert_eq!(key.as_deref(), Some("backup.allowed_directories"));
        assert!(message.contains("root directory"), "{message}");
    }

    #[test]
    fn plugins_are_declared_with_a_library_and_their_own_config() {
        let text = format!(
            "{GOOD}\n[plugins.hello]\nlibrary = \"libhello.so\"\nrole = \"readwrite\"\n[plugins.hello.config]\ngreeting = \"Hi\"\n\n[plugins.backup]\nlibrary = \"builtin\"\nenabled = false\nconfig_file = \"backup.toml\"\n"
        );
        let config = parse(&text).unwrap();
        assert_eq!(config.plugin_dir, PathBuf::from("/etc/cairn/plugins"));
        assert_eq!(
            config.plugins,
            vec![
                PluginDecl {
                    name: "backup".into(),
                    library: LibrarySource::Builtin,
                    enabled: false,
                    config: PluginConfigSource::File(PathBuf::from("/etc/cairn/backup.toml")),
                    start_timeout: Some(DEFAULT_START_TIMEOUT),
                    role: Role::Readonly,
                },
                PluginDecl {
                    name: "hello".into(),
                    library: LibrarySource::File("libhello.so".into()),
                    enabled: true,
                    config: PluginConfigSource::Inline("greeting = \"Hi\"\n".into()),
                    start_timeout: Some(DEFAULT_START_TIMEOUT),
                    role: Role::Readwrite,
                },
            ]
        );
        // Undeclared: the least its calls need (the bundled automatic-backup backs up).
        assert_eq!(PluginDecl::default_role("automatic_backup"), Role::Backup);
        assert_eq!(PluginDecl::default_role("hello"), Role::Readonly);
    }

    #[test]
    fn a_plugin_library_outside_the_plugin_directory_is_refused() {
        let text = format!("{GOOD}\n[plugins.evil]\nlibrary = \"../../tmp/evil.so\"\n");
        let (line, _, key, message) = invalid(&text);
        assert_eq!(line, 11);
        assert_eq!(key.as_deref(), Some("plugins.evil.library"));
        assert!(
            message.contains("plugins load only from plugin_dir"),
            "{message}"
        );
    }

    #[test]
    fn relative_data_dir_is_resolved_against_the_config_files_directory() {
        let config = parse(GOOD).unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/etc/data"));
        assert_eq!(config.listen, "127.0.0.1:5480".parse().unwrap());
        assert_eq!(config.users.len(), 1);
        assert_eq!(config.users[0].role, Role::Admin);
    }

    #[test]
    fn unknown_key_names_line_column_and_key() {
        let text = GOOD.replace(
            "data_dir = \"../data\"",
            "data_dir = \"../data\"\nlisten_port = 5",
        );
        let (line, column, key, message) = invalid(&text);
        assert_eq!((line, column), (5, 1));
        assert_eq!(key.as_deref(), Some("server.listen_port"));
        assert!(message.contains("unknown field `listen_port`"), "{message}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let text = GOOD.replace(
            "data_dir = \"../data\"",
            "data_dir = \"../data\"\nbusy_timeout_ms = \"soon\"",
        );
        let (line, _, key, message) = invalid(&text);
        assert_eq!(line, 5);
        assert_eq!(key.as_deref(), Some("server.busy_timeout_ms"));
        assert!(message.contains("invalid type"), "{message}");
    }

    #[test]
    fn reserved_space_is_a_size_and_defaults_to_64_mib() {
        assert_eq!(parse(GOOD).unwrap().reserved_space, 64 << 20);
        let with = |value: &str| {
            GOOD.replace(
                "data_dir = \"../data\"",
                &format!("data_dir = \"../data\"\nreserved_space = {value}"),
            )
        };
        assert_eq!(parse(&with("\"16MiB\"")).unwrap().reserved_space, 16 << 20);
        assert_eq!(parse(&with("0")).unwrap().reserved_space, 0);
        for bad in ["\"lots\"", "-1"] {
            let (line, _, key, message) = invalid(&with(bad));
            assert_eq!(line, 5, "{bad}");
            assert_eq!(key.as_deref(), Some("server.reserved_space"), "{bad}");
            assert!(message.contains("reserved_space"), "{bad}: {message}");
        }
    }

    #[test]
    fn mmap_size_is_a_size_up_to_sqlites_ceiling_and_defaults_to_1_gib() {
        assert_eq!(parse(GOOD).unwrap().mmap_size, 1 << 30);
        let with = |value: &str| {
            GOOD.replace(
                "data_dir = \"../data\"",
                &format!("data_dir = \"../data\"\nmmap_size = {value}"),
            )
        };
        assert_eq!(parse(&with("\"256MiB\"")).unwrap().mmap_size, 256 << 20);
        assert_eq!(parse(&with("0")).unwrap().mmap_size, 0);
        for bad in ["\"4GiB\"", "\"lots\"", "-1"] {
            let (line, _, key, message) = invalid(&with(bad));
            assert_eq!(line, 5, "{bad}");
            assert_eq!(key.as_deref(), Some("server.mmap_size"), "{bad}");
            assert!(message.contains("mmap_size"), "{bad}: {message}");
        }
    }

    #[test]
    fn bad_address_says_how_to_write_one() {
        let text = GOOD.replace("127.0.0.1:5480", "localhost:99999");
        let (line, column, key, message) = invalid(&text);
        assert_eq!((line, column), (3, 10));
        assert_eq!(key.as_deref(), Some("server.listen"));
        assert!(message.contains("127.0.0.1:5480"), "{message}");
    }

    #[test]
    fn unknown_role_lists_the_roles() {
        let text = GOOD.replace("role = \"admin\"", "role = \"root\"");
        let (line, _, key, message) = invalid(&text);
        assert_eq!(line, 7);
        assert_eq!(key.as_deref(), Some("users.admin.role"));
        assert!(message.contains("readonly"), "{message}");
    }

    #[test]
    fn user_without_password_is_refused() {
        let text = GOOD.replace("password_env = \"CAIRN_ADMIN_PASSWORD\"", "");
        let (_, _, _, message) = invalid(&text);
        assert!(message.contains("has no password"), "{message}");
    }

    #[test]
    fn user_name_that_cannot_be_a_file_name_is_refused() {
        let text = GOOD.replace("[users.admin]", "[users.\"../root\"]");
        let (line, _, _, message) = invalid(&text);
        assert_eq!(line, 6);
        assert!(
            message.starts_with("invalid user name \"../root\""),
            "{message}"
        );
    }

    #[test]
    fn malformed_scram_secret_is_refused() {
        let text = GOOD.replace(
            "password_env = \"CAIRN_ADMIN_PASSWORD\"",
            "scram = \"md5abc\"",
        );
        let (line, _, key, message) = invalid(&text);
        assert_eq!(line, 8);
        assert_eq!(key.as_deref(), Some("users.admin.scram"));
        assert!(message.contains("cairn passwd"), "{message}");
    }
}
