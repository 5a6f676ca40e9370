//! The options of one backup, from `WITH (…)`, the OrientDB console flags, the CLI or a plugin.

use cairn_plugin_api::backup_options;

use super::error::BackupError;
use super::tables::TableFilter;
use crate::sql::server_statement::Literal;

pub const DEFAULT_LEVEL: u32 = 6;
/// The level of an increment's pages unless a level is asked for. On a 1 GiB database after
/// 1 % of its rows were updated, scattered (a quarter of its pages changed), level 3 wrote
/// 1.07× level 6's bytes in half its time (BENCHMARKS.md): increments are taken often and
/// kept briefly, their pages mostly unlike each other, and their time is that of deflate.
pub const INCREMENT_DEFAULT_LEVEL: u32 = 3;
pub const DEFAULT_BUFFER: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupOptions {
    /// 0 (stored) to 9; 6 is within 1 % of 9's size at twice its speed.
    pub compression_level: u32,
    /// The unit of reading, compressing and writing. Memory in use is about
    /// `buffer_size × (2 × threads + 3)`, whatever the database size.
    pub buffer_size: usize,
    /// Upper bound on bytes of database read per second, to spare a busy disk.
    pub max_rate: Option<u64>,
    /// Compression threads (default: one per core).
    pub threads: usize,
    /// How long the job may run before it is stopped (Doris's `timeout`): for SQL's jobs a
    /// day unless written ([`BackupOptions::from_sql`]); none for the plugins', the CLI's and
    /// continuous archiving's bases.
    pub timeout: Option<std::time::Duration>,
    /// A table-level backup: the tables kept (Doris's `ON (…)` / `EXCLUDE (…)`).
    pub tables: Option<TableFilter>,
    /// Whether `compression_level` was asked for (else an increment uses its own default).
    level_asked: bool,
    /// `key = 'NAME'` (with `encryption = 'aes-256'`): the archive's entries are encrypted
    /// with that configured key; [`BackupOptions::resolve_key`] finds it.
    pub key_name: Option<String>,
    /// The key named, once found in the keyring.
    pub key: Option<std::sync::Arc<super::encryption::Key>>,
}

/// The longest timeout written in seconds: a year (for no limit, write 0).
const MAX_TIMEOUT_SECONDS: i64 = 366 * 86_400;

/// Doris's default job timeout: a day.
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(86_400);

impl Default for BackupOptions {
    fn default() -> BackupOptions {
        BackupOptions {
            compression_level: DEFAULT_LEVEL,
            buffer_size: DEFAULT_BUFFER,
            max_rate: None,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            timeout: None,
            tables: None,
            level_asked: false,
            key_name: None,
            key: None,
        }
    }
}

impl BackupOptions {
    /// Options as written in SQL (`WITH (…)`, console flags) or passed by a plugin, checked.
    pub fn from_written(written: &[(String, Literal)]) -> Result<BackupOptions, BackupError> {
        let mut options = BackupOptions::default();
        let mut algorithm = None;
        for (name, value) in written {
            let size = |value: &Literal| match value {
                Literal::Integer(n) if *n > 0 => Ok(*n as u64),
                Literal::Text(text) => parse_size(text),
                other => Err(BackupError::InvalidOption(format!(
                    "{name} must be a size such as '1MiB' or a number of bytes, got {other}"
                ))),
            };
            match (name.as_str(), value) {
                ("compression_level", Literal::Integer(level)) => options.set_level(*level)?,
                ("buffer_size", value) => options.set_buffer_size(size(value)?)?,
                ("max_rate", value) => options.set_max_rate(size(value)?)?,
                // Doris writes seconds; a text takes a unit ('2s', '1h'); 0 is no limit.
                ("timeout", Literal::Integer(seconds))
                    if (0..=MAX_TIMEOUT_SECONDS).contains(seconds) =>
                {
                    options.timeout =
                        (*seconds > 0).then(|| std::time::Duration::from_secs(*seconds as u64));
                }
                ("timeout", Literal::Text(text)) => {
                    options.timeout = crate::sql::settings::parse_duration(text).map_err(|m| {
                        BackupError::InvalidOption(format!("timeout: {m} (0 is no limit)"))
                    })?;
                }
                ("timeout", other) => {
                    return Err(BackupError::InvalidOption(format!(
                        "timeout must be a time such as '2h' or a number of seconds up to {MAX_TIMEOUT_SECONDS} (0: no limit), got {other}"
                    )));
                }
                ("tables" | "exclude_tables", value) => {
                    if options.tables.is_some() {
                        return Err(BackupError::InvalidOption(
                            "write tables or exclude_tables, not both".into(),
                        ));
                    }
                    let names = table_names(name, value)?;
                    options.tables = Some(if name == "tables" {
                        TableFilter::Only(names)
                    } else {
                        TableFilter::Except(names)
                    });
                }
                ("encryption", Literal::Text(text)) if text == super::encryption::ALGORITHM => {
                    algorithm = Some(text.clone());
                }
                ("encryption", _) => {
                    return Err(BackupError::InvalidOption(format!(
                        "encryption must be '{}' (WinZip AES-256 entries), with key = 'NAME' of a [backup.keys.NAME]",
                        super::encryption::ALGORITHM
                    )));
                }
                ("key", Literal::Text(text)) if !text.trim().is_empty() => {
                    options.key_name = Some(text.trim().to_owned());
                }
                ("key", _) => {
                    return Err(BackupError::InvalidOption(
                        "key must name a [backup.keys.NAME] table of the server config, e.g. key = 'offsite_2026' (never the passphrase itself)".into(),
                    ));
                }
                ("compression_level", other) => {
                    return Err(BackupError::InvalidOption(format!(
                        "compression_level must be an integer 0–9, got {other}"
                    )));
                }
                (other, _) => {
                    return Err(BackupError::InvalidOption(format!(
                        "unknown option {other}; BACKUP takes compression_level, buffer_size, max_rate, timeout, tables, exclude_tables, encryption, key and detached"
                    )));
                }
            }
        }
        if algorithm.is_some() && options.key_name.is_none() {
            return Err(BackupError::InvalidOption(format!(
                "encryption = '{}' needs key = 'NAME', naming a [backup.keys.NAME] table of the server config",
                super::encryption::ALGORITHM
            )));
        }
        Ok(options)
    }

    /// Finds the key `key = '…'` named in `keys` (nothing to do without one).
    pub fn resolve_key(&mut self, keys: &super::encryption::Keyring) -> Result<(), BackupError> {
        if let Some(name) = &self.key_name {
            self.key = Some(keys.get(name)?);
        }
        Ok(())
    }

    /// As [`Self::from_written`], for a statement: Doris's default timeout of a day unless
    /// one is written.
    pub fn from_sql(written: &[(String, Literal)]) -> Result<BackupOptions, BackupError> {
        let mut options = BackupOptions::from_written(written)?;
        if !written.iter().any(|(name, _)| name == "timeout") {
            options.timeout = Some(DEFAULT_TIMEOUT);
        }
        Ok(options)
    }

    pub fn set_level(&mut self, level: i64) -> Result<(), BackupError> {
        if !(0..=9).contains(&level) {
            return Err(BackupError::InvalidOption(format!(
                "compression_level must be 0 (store) to 9 (smallest), got {level}"
            )));
        }
        self.compression_level = level as u32;
        self.level_asked = true;
        Ok(())
    }

    /// The level an archive's data is deflated at: the one asked for, else
    /// [`DEFAULT_LEVEL`], or [`INCREMENT_DEFAULT_LEVEL`] for an increment's pages.
    pub fn level_for(&self, increment: bool) -> u32 {
        if increment && !self.level_asked {
            INCREMENT_DEFAULT_LEVEL
        } else {
            self.compression_level
        }
    }

    pub fn set_buffer_size(&mut self, bytes: u64) -> Result<(), BackupError> {
        self.buffer_size = backup_options::check_buffer_size(bytes).map_err(invalid)? as usize;
        Ok(())
    }

    pub fn set_max_rate(&mut self, bytes_per_second: u64) -> Result<(), BackupError> {
        self.max_rate = Some(backup_options::check_max_rate(bytes_per_second).map_err(invalid)?);
        Ok(())
    }
}

/// The names of `tables = ['a', 'b']` (or one text, `'a, b'`).
fn table_names(option: &str, value: &Literal) -> Result<Vec<String>, BackupError> {
    let names: Vec<String> = match value {
        Literal::Text(text) => text.split(',').map(|n| n.trim().to_owned()).collect(),
        Literal::List(items) => items
            .iter()
            .map(|item| match item {
                Literal::Text(name) => Ok(name.trim().to_owned()),
                other => Err(BackupError::InvalidOption(format!(
                    "{option} holds {other}; write table names, e.g. {option} = ['orders', 'items']"
                ))),
            })
            .collect::<Result<_, _>>()?,
        other => {
            return Err(BackupError::InvalidOption(format!(
                "{option} must list table names, e.g. {option} = ['orders', 'items'], got {other}"
            )));
        }
    };
    if names.iter().any(String::is_empty) {
        return Err(BackupError::InvalidOption(format!(
            "{option} has an empty name; write {option} = ['orders', 'items']"
        )));
    }
    Ok(names)
}

/// Parses a size such as `1MiB`, `512KiB`, `4MB`, `1048576` (the plugin API's rules, so a
/// plugin checks its config exactly as a backup is checked).
pub fn parse_size(text: &str) -> Result<u64, BackupError> {
    backup_options::parse_size(text).map_err(invalid)
}

fn invalid(e: cairn_plugin_api::PluginError) -> BackupError {
    BackupError::InvalidOption(e.message().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A timeout too large to reach was a panic when the job armed it (and the database's
    /// backups stayed refused as running).
    #[test]
    fn a_huge_timeout_is_refused_or_no_limit_never_a_panic() {
        let written = |value: Literal| vec![("timeout".to_owned(), value)];
        assert!(BackupOptions::from_sql(&written(Literal::Integer(i64::MAX))).is_err());
        let year = BackupOptions::from_sql(&written(Literal::Integer(366 * 86_400))).unwrap();
        assert_eq!(
            year.timeout,
            Some(std::time::Duration::from_secs(366 * 86_400))
        );
        assert_eq!(
            BackupOptions::from_sql(&[]).unwrap().timeout,
            Some(DEFAULT_TIMEOUT)
        );
        assert_eq!(BackupOptions::default().timeout, None);
        let progress = crate::backup::progress::Progress::default();
        progress.set_timeout(std::time::Duration::MAX);
        assert!(progress.check().is_ok());
    }

    #[test]
    fn out_of_range_options_are_refused() {
        let mut o = BackupOptions::default();
        assert!(o.set_level(10).is_err());
        assert!(o.set_level(-1).is_err());
        assert!(o.set_buffer_size(1).is_err());
        assert!(parse_size("1 parsec").is_err());
        o.set_buffer_size(1 << 20).unwrap();
        o.set_level(0).unwrap();
    }
}
