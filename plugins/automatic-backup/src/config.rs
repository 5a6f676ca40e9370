//! The plugin's config (`config/automatic-backup.toml`), read and checked once: a value that
//! cannot work is refused here, with the key named, so the server keeps serving without this
//! plugin (at start) or keeps the running config (on reload).

use std::time::Duration;

use cairn_plugin_api::{PluginConfig, PluginError, Value, backup_options};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Deserialize;

use crate::duration::{self, Span};
use crate::naming::Template;
use crate::retention::Retention;
use crate::schedule::Schedule;
use crate::state::ArchiveKind;

/// What the operator wrote, before checking.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Written {
    #[serde(default = "yes")]
    enabled: bool,
    schedule: Option<String>,
    timezone: Option<String>,
    first_time: Option<String>,
    delay: Option<String>,
    #[serde(default)]
    db_include: Vec<String>,
    #[serde(default)]
    db_exclude: Vec<String>,
    #[serde(default = "full")]
    mode: String,
    /// With `mode = "incremental"`: a count of archives, or an age ("7d").
    full_every: Option<Every>,
    #[serde(default = "default_directory")]
    target_directory: String,
    /// Default: by mode (see [`default_file_name`]).
    target_file_name: Option<String>,
    compression_level: Option<i64>,
    /// The name of a `[backup.keys.NAME]` of the server config: archives are encrypted.
    encryption_key: Option<String>,
    buffer_size: Option<Size>,
    max_rate: Option<Size>,
    #[serde(default = "yes")]
    verify: bool,
    #[serde(default)]
    on_previous_running: Overlap,
    #[serde(default = "default_retries")]
    retries: u32,
    #[serde(default = "default_retry_delay")]
    retry_delay: String,
    #[serde(default = "yes")]
    catch_up: bool,
    retention: Option<WrittenRetention>,
    /// Restore drills of each database's newest archive: "daily", "weekly", "monthly" or a
    /// cron expression, in `timezone`.
    drill: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WrittenRetention {
    #[serde(default)]
    keep_last: u32,
    #[serde(default)]
    keep_hourly: u32,
    #[serde(default)]
    keep_daily: u32,
    #[serde(default)]
    keep_weekly: u32,
    #[serde(default)]
    keep_monthly: u32,
    #[serde(default)]
    keep_yearly: u32,
    keep_within: Option<String>,
    #[serde(default = "one")]
    min_keep: u32,
}

/// A size as bytes or as text ("1MiB"); the server reads both.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Size {
    Bytes(i64),
    Text(String),
}

/// `full_every` as written: a count, or a duration as text.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Every {
    Count(i64),
    Text(String),
}

/// When `mode = "incremental"` takes a full archive instead of an increment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FullEvery {
    /// When the chain has this many archives (the full one and its increments).
    Archives(usize),
    /// When the chain's full archive is this old (give or take a hundredth of it, so that a
    /// daily schedule with "7d" takes a full every seventh run despite a second's jitter).
    Age(Duration),
}

impl FullEvery {
    /// The default: a full archive and six increments, as a weekly full with daily
    /// increments.
    pub const DEFAULT: FullEvery = FullEvery::Archives(7);

    /// Whether the next archive after a chain of `links` archives, whose full one was taken
    /// at `full_at`, is a full one.
    pub fn full_due(self, links: usize, full_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        match self {
            FullEvery::Archives(n) => links >= n,
            FullEvery::Age(age) => {
                let age = chrono::Duration::from_std(age).unwrap_or(chrono::Duration::MAX);
                now - full_at + age / 100 >= age
            }
        }
    }
}

/// The longest chain `full_every` may ask for: the server follows at most this many links.
const MAX_CHAIN: i64 = 10_000;

/// What a run does when the previous run of the same database is still going.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Overlap {
    /// This run is dropped; the next one is the next scheduled time.
    #[default]
    Skip,
    /// This run starts as soon as the previous one ends.
    Wait,
}

fn yes() -> bool {
    true
}
fn one() -> u32 {
    1
}
fn full() -> String {
    "full".into()
}
fn default_directory() -> String {
    "automatic".into()
}
/// The default `target_file_name` of each kind.
fn default_file_name(kind: ArchiveKind) -> &'static str {
    match kind {
        ArchiveKind::Export => "${DBNAME}-${DATE:yyyyMMddHHmmss}.json.gz",
        ArchiveKind::Full => "${DBNAME}-${DATE:yyyyMMddHHmmss}.zip",
    }
}

/// The ending every file name of a kind must have: retention and operators tell the kinds
/// apart by it.
fn extension(kind: ArchiveKind) -> &'static str {
    match kind {
        ArchiveKind::Export => ".json.gz",
        ArchiveKind::Full => ".zip",
    }
}
fn default_retries() -> u32 {
    3
}
fn default_retry_delay() -> String {
    "1m".into()
}

/// A checked config.
#[derive(Debug, Clone)]
pub struct Policy {
    pub enabled: bool,
    pub schedule: Schedule,
    /// What each run writes (`mode`).
    pub kind: ArchiveKind,
    include: Vec<glob::Pattern>,
    exclude: Vec<glob::Pattern>,
    pub target_directory: String,
    pub template: Template,
    /// Options for the server's backup (`compression_level`, `buffer_size`, `max_rate`).
    pub backup_options: Vec<(&'static str, Value)>,
    pub verify: bool,
    pub on_previous_running: Overlap,
    pub retries: u32,
    pub retry_delay: Duration,
    pub catch_up: bool,
    /// `None`: every archive is kept.
    pub retention: Option<Retention>,
    /// With `mode = "incremental"`: archives are members of a collection (named by the
    /// server), increments on the newest restorable one, and a full one this often.
    pub chain: Option<FullEvery>,
    /// `drill`: when each database's newest archive is restored into a scratch file and
    /// checked.
    pub drill: Option<Schedule>,
}

fn key_error(key: &str, message: impl std::fmt::Display) -> PluginError {
    let message = message.to_string();
    // The server's own checks name the option already ("buffer_size must be …").
    let message = message
        .strip_prefix(key)
        .map_or(message.as_str(), str::trim_start);
    PluginError::Config(format!("`{key}` {message}"))
}

impl Policy {
    /// Reads and checks the config; `now` is when it starts to apply (names are checked on
    /// the runs of the year from then).
    pub fn from_config(config: &PluginConfig, now: DateTime<Utc>) -> Result<Policy, PluginError> {
        let translated;
        let config = if crate::orientdb::is_orientdb_form(config.as_str()) {
            let (toml, notes) = crate::orientdb::translate(
                config.as_str(),
                crate::orientdb::local_zone().as_deref(),
            )?;
            for note in &notes {
                cairn_plugin_api::tracing::info!(mapped = %note, "OrientDB's automatic-backup.json");
            }
            translated = PluginConfig::new(toml);
            &translated
        } else {
            config
        };
        let written: Written = config.parse()?;
        let zone: Tz = match &written.timezone {
            None => Tz::UTC,
            Some(name) => name.parse().map_err(|_| {
                key_error(
                    "timezone",
                    format!("{name:?} is not an IANA time zone; write one such as \"Europe/Berlin\" or \"UTC\""),
                )
            })?,
        };
        let schedule = match (&written.schedule, &written.first_time, &written.delay) {
            (Some(cron), None, None) => {
                Schedule::cron(cron, zone).map_err(|m| key_error("schedule", m))?
            }
            (None, Some(first_time), Some(delay)) => {
                let delay = duration::parse(delay).map_err(|m| key_error("delay", m))?;
                Schedule::every(first_time, delay, zone).map_err(|(key, m)| key_error(key, m))?
            }
            (Some(_), _, _) => {
                return Err(key_error(
                    "schedule",
                    "and `first_time`/`delay` are both set; keep one way of saying when",
                ));
            }
            (None, Some(_), None) => {
                return Err(key_error(
                    "delay",
                    "is missing; `first_time` needs a `delay` (\"1d\", \"4h\")",
                ));
            }
            (None, None, Some(_)) => {
                return Err(key_error(
                    "first_time",
                    "is missing; `delay` needs a `first_time` (\"02:00:00\")",
                ));
            }
            (None, None, None) => {
                return Err(key_error(
                    "schedule",
                    "is missing; write a cron expression (schedule = \"0 2 * * *\") or first_time and delay",
                ));
            }
        };
        let drill = written
            .drill
            .as_deref()
            .map(|written| {
                let cron = match written.trim() {
                    "hourly" => "@hourly",
                    "daily" => "@daily",
                    "weekly" => "@weekly",
                    "monthly" => "@monthly",
                    other => other,
                };
                Schedule::cron(cron, zone).map_err(|m| {
                    key_error(
                        "drill",
                        format!("{m}; or write \"daily\", \"weekly\" or \"monthly\""),
                    )
                })
            })
            .transpose()?;
        let include = patterns("db_include", &written.db_include)?;
        let exclude = patterns("db_exclude", &written.db_exclude)?;
        let (kind, incremental) = match written.mode.as_str() {
            "full" => (ArchiveKind::Full, false),
            "incremental" => (ArchiveKind::Full, true),
            "export" => (ArchiveKind::Export, false),
            other => {
                return Err(key_error(
                    "mode",
                    format!(
                        "{other:?} is not a mode; write \"full\" (ZIP archives of the storage), \"incremental\" (a full ZIP archive, then only the pages changed since the last) or \"export\" (EXPORT DATABASE files: gzip JSON lines)"
                    ),
                ));
            }
        };
        let chain = match (incremental, &written.full_every) {
            (false, None) => None,
            (false, Some(_)) => {
                return Err(key_error(
                    "full_every",
                    format!(
                        "is set, but mode = {:?} writes only full archives; set mode = \"incremental\" or remove full_every",
                        written.mode
                    ),
                ));
            }
            (true, None) => Some(FullEvery::DEFAULT),
            (true, Some(Every::Count(n))) => match usize::try_from(*n) {
                Ok(n @ 2..) if n as i64 <= MAX_CHAIN => Some(FullEvery::Archives(n)),
                _ => {
                    return Err(key_error(
                        "full_every",
                        format!(
                            "is {n}; write a count of archives from 2 to {MAX_CHAIN} (7: a full one, then six increments) or an age such as \"7d\" (1 would make every archive full: that is mode = \"full\")"
                        ),
                    ));
                }
            },
            (true, Some(Every::Text(text))) => {
                let age = duration::parse(text).map_err(|m| key_error("full_every", m))?;
                if age.is_zero() {
                    return Err(key_error(
                        "full_every",
                        "is 0; write an age such as \"7d\" or a count such as 7",
                    ));
                }
                Some(FullEvery::Age(age))
            }
        };
        if incremental && written.target_file_name.is_some() {
            return Err(key_error(
                "target_file_name",
                "is set, but with mode = \"incremental\" the server names each archive (<db>-<UTC time>-full.zip or -incr.zip) so that an increment finds its parent beside it; remove target_file_name",
            ));
        }
        let export = kind == ArchiveKind::Export;
        if written.target_directory.trim().is_empty() {
            return Err(key_error(
                "target_directory",
                "is empty; write a directory such as \"automatic\" (it resolves under the server's backup directory)",
            ));
        }
        let file_name = written
            .target_file_name
            .as_deref()
            .unwrap_or(default_file_name(kind));
        let template = Template::parse(file_name).map_err(|m| key_error("target_file_name", m))?;
        if !template.ends_with(extension(kind)) {
            return Err(key_error(
                "target_file_name",
                format!(
                    "{file_name:?} does not end with {:?}, but mode = \"{}\" writes {} files; name them so (other tools and retention tell kinds apart by the name)",
                    extension(kind),
                    kind.mode(),
                    if export {
                        "gzip JSON-lines export"
                    } else {
                        "ZIP archive"
                    }
                ),
            ));
        }
        // Two runs that would want one name: the second would fail, every time. (The
        // server's names for a collection's members are to the millisecond.)
        if let Some((first, second)) = name_collision(&template, &schedule, now)
            && !incremental
        {
            let zone = schedule.zone();
            let local = |t: DateTime<Utc>| t.with_timezone(&zone).format("%Y-%m-%d %H:%M:%S %Z");
            return Err(key_error(
                "target_file_name",
                format!(
                    "{file_name:?} gives the runs at {} and {} the same name ({}): the second would fail. Add finer fields (${{DATE:yyyyMMddHHmmss}})",
                    local(first),
                    local(second),
                    template.render("db", first.with_timezone(&zone))
                ),
            ));
        }
        let mut backup_options = Vec::new();
        if export {
            backup_options.push(("format", Value::Text("export".into())));
        }
        if let Some(level) = written.compression_level {
            let lowest = i64::from(export);
            if !(lowest..=9).contains(&level) {
                let range = if export {
                    "1 (fastest) to 9 (smallest); an export is gzip, which has no stored mode"
                } else {
                    "0 (store) to 9 (smallest)"
                };
                return Err(key_error(
                    "compression_level",
                    format!("is {level}; write {range}"),
                ));
            }
            backup_options.push(("compression_level", Value::Integer(level)));
        }
        if let Some(key) = &written.encryption_key {
            if export {
                return Err(key_error(
                    "encryption_key",
                    "applies to mode = \"full\" and \"incremental\"; this plugin writes exports plain (EXPORT DATABASE … TO 'x.zip' WITH (key = 'NAME') writes an encrypted one)",
                ));
            }
            if key.trim().is_empty() {
                return Err(key_error(
                    "encryption_key",
                    "is empty; name a [backup.keys.NAME] table of the server config",
                ));
            }
            backup_options.push(("key", Value::Text(key.trim().to_owned())));
        }
        // Checked by the server's own rules now, so no run is refused for them later.
        type Check = fn(u64) -> Result<u64, PluginError>;
        for (key, size, check) in [
            (
                "buffer_size",
                &written.buffer_size,
                backup_options::check_buffer_size as Check,
            ),
            (
                "max_rate",
                &written.max_rate,
                backup_options::check_max_rate,
            ),
        ] {
            let bytes = match size {
                None => continue,
                Some(Size::Bytes(n)) => u64::try_from(*n).map_err(|_| {
                    key_error(
                        key,
                        format!("is {n}; write a positive size such as \"1MiB\""),
                    )
                })?,
                Some(Size::Text(text)) => {
                    backup_options::parse_size(text).map_err(|e| key_error(key, e.message()))?
                }
            };
            let bytes = check(bytes).map_err(|e| key_error(key, e.message()))?;
            let bytes = i64::try_from(bytes)
                .map_err(|_| key_error(key, format!("{bytes} bytes is too large")))?;
            backup_options.push((key, Value::Integer(bytes)));
        }
        let retry_delay =
            duration::parse(&written.retry_delay).map_err(|m| key_error("retry_delay", m))?;
        let retention = written
            .retention
            .map(|r| -> Result<Retention, PluginError> {
                let keep_within = r
                    .keep_within
                    .as_deref()
                    .map(Span::parse)
                    .transpose()
                    .map_err(|m| key_error("retention.keep_within", m))?;
                let retention = Retention {
                    keep_last: r.keep_last,
                    keep_hourly: r.keep_hourly,
                    keep_daily: r.keep_daily,
                    keep_weekly: r.keep_weekly,
                    keep_monthly: r.keep_monthly,
                    keep_yearly: r.keep_yearly,
                    keep_within,
                    min_keep: r.min_keep,
                };
                if !retention.has_rules() {
                    return Err(key_error(
                        "retention",
                        "has no keep_* rule, so it would keep only min_keep archives; add a rule (keep_daily = 7) or remove [retention] to keep every archive",
                    ));
                }
                if retention.min_keep == 0 {
                    return Err(key_error(
                        "retention.min_keep",
                        "is 0, which would allow deleting the only good copy; write 1 or more",
                    ));
                }
                Ok(retention)
            })
            .transpose()?;
        if retention.is_some() && !written.verify {
            return Err(key_error(
                "verify",
                "is false while [retention] is set: pruning runs only after a verified backup; set verify = true or remove [retention]",
            ));
        }
        Ok(Policy {
            enabled: written.enabled,
            drill,
            schedule,
            kind,
            include,
            exclude,
            target_directory: written.target_directory,
            template,
            backup_options,
            verify: written.verify,
            on_previous_running: written.on_previous_running,
            retries: written.retries,
            retry_delay,
            catch_up: written.catch_up,
            retention,
            chain,
        })
    }

    /// Whether `database` is backed up: included (an empty include list includes all) and
    /// not excluded (exclude wins).
    pub fn includes(&self, database: &str) -> bool {
        let included = self.include.is_empty() || self.include.iter().any(|p| p.matches(database));
        included && !self.exclude.iter().any(|p| p.matches(database))
    }
}

impl Policy {
    /// The `db_include` patterns that match none of `databases`.
    pub fn unmatched_includes(&self, databases: &[String]) -> Vec<String> {
        self.include
            .iter()
            .filter(|p| !databases.iter().any(|d| p.matches(d)))
            .map(|p| p.as_str().to_owned())
            .collect()
    }
}

/// How many runs are looked at from the first run, and from before each DST change.
const RUNS_LOOKED_AT: usize = 5_000;

/// The first two runs the template would give one name, looked for among the runs from
/// `now` and around each change of the zone's offset in the year from `now`. A schedule's
/// wall-clock times only grow (a repeated hour's times are skipped), so equal names can only
/// be those of consecutive runs.
fn name_collision(
    template: &Template,
    schedule: &Schedule,
    now: DateTime<Utc>,
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let zone = schedule.zone();
    let first = schedule.first_after(now)?;
    let windows = std::iter::once(first - chrono::Duration::seconds(1))
        .chain(schedule.offset_changes(now, 366));
    for start in windows {
        let mut at = start;
        let mut previous: Option<(DateTime<Utc>, String)> = None;
        for _ in 0..RUNS_LOOKED_AT {
            let Some(next) = schedule.next_after(at, Some(first)) else {
                break;
            };
            let name = template.render("db", next.with_timezone(&zone));
            if let Some((when, earlier)) = &previous
                && *earlier == name
            {
                return Some((*when, next));
            }
            previous = Some((next, name));
            at = next;
        }
    }
    None
}

fn patterns(key: &str, written: &[String]) -> Result<Vec<glob::Pattern>, PluginError> {
    written
        .iter()
        .map(|p| {
            glob::Pattern::new(p)
                .map_err(|e| key_error(key, format!("has {p:?}, which is not a name or glob: {e}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// When the tests' configs start to apply.
    fn now() -> DateTime<Utc> {
        crate::clock::instant("2026-01-15T12:00:00Z")
    }

    fn policy(text: &str) -> Result<Policy, PluginError> {
        Policy::from_config(&PluginConfig::new(text), now())
    }

    fn refusal(text: &str) -> String {
        match policy(text) {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn the_shipped_config_is_valid() {
        let shipped = include_str!("../../../config/automatic-backup.toml");
        let policy = policy(shipped).unwrap();
        assert!(policy.enabled);
        assert!(policy.verify);
        assert!(policy.retention.is_some());
    }

    #[test]
    fn include_and_exclude_take_names_and_globs_and_exclude_wins() {
        let p = policy("schedule = \"0 2 * * *\"\ndb_include = [\"sales*\", \"hr\"]\ndb_exclude = [\"sales_tmp\"]").unwrap();
        assert!(p.includes("sales"));
        assert!(p.includes("sales_eu"));
        assert!(p.includes("hr"));
        assert!(!p.includes("sales_tmp"));
        assert!(!p.includes("crm"));
        let all = policy("schedule = \"0 2 * * *\"\ndb_exclude = [\"scratch\"]").unwrap();
        assert!(all.includes("crm"));
        assert!(!all.includes("scratch"));
    }

    #[test]
    fn retention_must_never_count_a_file_of_another_kind_the_name_fits_the_mode() {
        let export_as_zip = refusal(
            "schedule = \"0 2 * * *\"\nmode = \"export\"\ntarget_file_name = \"${DBNAME}-${DATE:yyyyMMddHHmmss}.zip\"",
        );
        assert!(
            export_as_zip.contains("`target_file_name`") && export_as_zip.contains(".json.gz"),
            "{export_as_zip}"
        );
        let zip_as_export = refusal(
            "schedule = \"0 2 * * *\"\ntarget_file_name = \"${DBNAME}-${DATE:yyyyMMddHHmmss}.json.gz\"",
        );
        assert!(zip_as_export.contains(".zip"), "{zip_as_export}");
        let export = policy("schedule = \"0 2 * * *\"\nmode = \"export\"").unwrap();
        assert_eq!(export.kind, ArchiveKind::Export);
        assert_eq!(
            policy("schedule = \"0 2 * * *\"").unwrap().kind,
            ArchiveKind::Full
        );
    }

    #[test]
    fn validate_at_load_sizes_and_a_template_coarser_than_the_schedule() {
        for (text, key) in [
            ("buffer_size = \"1KiB\"", "`buffer_size`"),
            ("buffer_size = \"1 parsec\"", "`buffer_size`"),
            ("buffer_size = 100", "`buffer_size`"),
            ("buffer_size = \"1GiB\"", "`buffer_size`"),
            ("max_rate = 0", "`max_rate`"),
            ("max_rate = \"0MiB\"", "`max_rate`"),
            ("max_rate = -5", "`max_rate`"),
        ] {
            let message = refusal(&format!("schedule = \"0 2 * * *\"\n{text}"));
            assert!(message.contains(key), "{text:?} gave {message:?}");
        }
        // Accepted sizes reach the server as bytes.
        let p = policy("schedule = \"0 2 * * *\"\nbuffer_size = \"1MiB\"\nmax_rate = \"50MiB\"")
            .unwrap();
        assert!(
            p.backup_options
                .contains(&("buffer_size", Value::Integer(1 << 20)))
        );
        assert!(
            p.backup_options
                .contains(&("max_rate", Value::Integer(50 << 20)))
        );
        // A daily name with an hourly schedule: every run after the first would fail.
        let coarse = refusal(
            "schedule = \"0 * * * *\"\ntarget_file_name = \"${DBNAME}-${DATE:yyyyMMdd}.zip\"",
        );
        assert!(
            coarse.contains("`target_file_name`")
                && coarse.contains("2026-01-15 13:00:00 UTC and 2026-01-15 14:00:00 UTC")
                && coarse.contains("db-20260115.zip"),
            "{coarse}"
        );
        let coarse = refusal(
            "first_time = \"00:00:00\"\ndelay = \"30m\"\ntarget_file_name = \"${DBNAME}-${DATE:yyyyMMddHH}.zip\"",
        );
        assert!(coarse.contains("the same name"), "{coarse}");
        // Daily names for a daily schedule are fine, in zones with DST too (the spring day is
        // 23 hours long, yet each run has its own date).
        for zone in [
            "UTC",
            "Europe/Berlin",
            "America/New_York",
            "Australia/Lord_Howe",
        ] {
            policy(&format!(
                "schedule = \"0 2 * * *\"\ntimezone = \"{zone}\"\ntarget_file_name = \"${{DBNAME}}-${{DATE:yyyyMMdd}}.zip\""
            ))
            .unwrap_or_else(|e| panic!("{zone}: {e}"));
        }
        // Names that collide only on the day the clocks spring forward in Berlin: 02:30 does
        // not exist and runs at 03:00, in the same hour as the run at 03:30.
        let spring = refusal(
            "schedule = \"30 2,3 * * *\"\ntimezone = \"Europe/Berlin\"\ntarget_file_name = \"${DBNAME}-${DATE:yyyyMMddHH}.zip\"",
        );
        assert!(spring.contains("2026-03-29 03:"), "{spring}");
    }

    #[test]
    fn incremental_mode_takes_a_full_archive_by_count_or_by_age() {
        let p = policy("schedule = \"0 2 * * *\"\nmode = \"incremental\"").unwrap();
        assert_eq!(p.chain, Some(FullEvery::Archives(7)));
        assert_eq!(p.kind, ArchiveKind::Full);
        let at = crate::clock::instant;
        let full_at = at("2026-05-01T02:00:00.500Z");
        let every_7 = FullEvery::Archives(7);
        assert!(!every_7.full_due(6, full_at, full_at));
        assert!(every_7.full_due(7, full_at, full_at));
        // Daily runs a little early or late still take the seventh day's archive full.
        let p = policy("schedule = \"0 2 * * *\"\nmode = \"incremental\"\nfull_every = \"7d\"")
            .unwrap();
        let age = p.chain.unwrap();
        assert!(!age.full_due(1, full_at, at("2026-05-07T02:00:00.100Z")));
        assert!(age.full_due(1, full_at, at("2026-05-08T02:00:00.100Z")));
        assert!(!age.full_due(1, full_at, at("2026-05-06T02:00:00.900Z")));
    }

    #[test]
    fn keep_within_follows_restics_units() {
        let p = policy("schedule = \"0 2 * * *\"\n[retention]\nkeep_within = \"1y\"").unwrap();
        assert_eq!(
            p.retention.unwrap().keep_within,
            Some(Span::parse("1y").unwrap())
        );
        let m = refusal("schedule = \"0 2 * * *\"\n[retention]\nkeep_within = \"6m\"");
        assert!(
            m.contains("`retention.keep_within`") && m.contains("months"),
            "{m}"
        );
    }

    #[test]
    fn db_include_patterns_that_match_no_database_are_named() {
        let p = policy("schedule = \"0 2 * * *\"\ndb_include = [\"salse*\", \"hr\"]").unwrap();
        let databases = vec!["default".to_owned(), "hr".to_owned(), "sales".to_owned()];
        assert_eq!(p.unmatched_includes(&databases), ["salse*"]);
    }

    #[test]
    fn bad_values_are_refused_naming_the_key() {
        // OrientDB's timer takes any delay: one that does not divide a day counts elapsed time.
        assert!(policy("first_time = \"02:00:00\"\ndelay = \"5h\"").is_ok());
        for (text, key) in [
            ("", "`schedule` is missing"),
            ("schedule = \"0 2 * *\"", "`schedule`"),
            (
                "schedule = \"0 2 * * *\"\ntimezone = \"Mars/Olympus\"",
                "`timezone`",
            ),
            ("first_time = \"02:00:00\"", "`delay` is missing"),
            ("first_time = \"2am\"\ndelay = \"1d\"", "`first_time`"),
            ("first_time = \"02:00:00\"\ndelay = \"0s\"", "`delay`"),
            (
                "schedule = \"0 2 * * *\"\nmode = \"export\"\ncompression_level = 0",
                "`compression_level`",
            ),
            (
                "schedule = \"0 2 * * *\"\nmode = \"differential\"",
                "`mode`",
            ),
            (
                "schedule = \"0 2 * * *\"\nfull_every = 7",
                "`full_every` is set, but mode = \"full\"",
            ),
            (
                "schedule = \"0 2 * * *\"\nmode = \"incremental\"\nfull_every = 1",
                "`full_every` is 1",
            ),
            (
                "schedule = \"0 2 * * *\"\nmode = \"incremental\"\nfull_every = \"weekly\"",
                "`full_every`",
            ),
            (
                "schedule = \"0 2 * * *\"\nmode = \"incremental\"\ntarget_file_name = \"${DBNAME}-${DATE:yyyyMMddHHmmss}.zip\"",
                "`target_file_name` is set",
            ),
            (
                "schedule = \"0 2 * * *\"\ncompression_level = 12",
                "`compression_level`",
            ),
            (
                "schedule = \"0 2 * * *\"\ntarget_file_name = \"backup.zip\"",
                "`target_file_name`",
            ),
            (
                "schedule = \"0 2 * * *\"\nretry_delay = \"soon\"",
                "`retry_delay`",
            ),
            (
                "schedule = \"0 2 * * *\"\n[retention]\nmin_keep = 2",
                "`retention`",
            ),
            (
                "schedule = \"0 2 * * *\"\n[retention]\nkeep_daily = 7\nmin_keep = 0",
                "`retention.min_keep`",
            ),
            (
                "schedule = \"0 2 * * *\"\nverify = false\n[retention]\nkeep_daily = 7",
                "`verify`",
            ),
            (
                "schedule = \"0 2 * * *\"\ndb_include = [\"[\"]",
                "`db_include`",
            ),
            (
                "schedule = \"0 2 * * *\"\ncompresion_level = 1",
                "unknown field `compresion_level`",
            ),
        ] {
            let message = refusal(text);
            assert!(
                message.contains(key),
                "{text:?} gave {message:?}, not naming {key}"
            );
        }
    }
}
