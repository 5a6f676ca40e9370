//! OrientDB's own config for this plugin, `automatic-backup.json`, read as OrientDB users have
//! it: its keys are mapped to this plugin's (and checked there, as if written so), with
//! OrientDB's defaults where a key is missing (compression level 9, a backup every 4 hours
//! from 23:00:00 into `backup`), and `firstTime` read in the server's local zone, as the JVM
//! OrientDB runs in reads it.

use cairn_plugin_api::PluginError;
use serde_json::{Map, Value};

/// Whether the config text is OrientDB's JSON form rather than TOML.
pub fn is_orientdb_form(text: &str) -> bool {
    text.trim_start().starts_with('{')
}

/// The server's local time zone as an IANA name, the zone OrientDB reads `firstTime` in:
/// `TZ` when set (glibc's rule: it wins over the system's), else the system's
/// (`/etc/localtime`); `None` when that is not a zone name this plugin knows.
pub fn local_zone() -> Option<String> {
    let name = match std::env::var("TZ") {
        Ok(tz) => tz.trim_start_matches(':').to_owned(),
        Err(_) => iana_time_zone::get_timezone().ok()?,
    };
    name.parse::<chrono_tz::Tz>().is_ok().then_some(name)
}

/// The config in this plugin's TOML form, and one note per key saying how it was mapped;
/// `local_zone` is the server's local zone ([`local_zone`]), which the schedule is read in.
pub fn translate(
    text: &str,
    local_zone: Option<&str>,
) -> Result<(String, Vec<String>), PluginError> {
    let refuse = |message: String| PluginError::Config(format!("automatic-backup.json: {message}"));
    let object: Map<String, Value> = match serde_json::from_str(text) {
        Ok(Value::Object(object)) => object,
        Ok(_) => return Err(refuse("is not a JSON object".into())),
        Err(e) => {
            return Err(refuse(format!(
                "line {}, column {}: {e}",
                e.line(),
                e.column()
            )));
        }
    };
    let mut toml = String::new();
    let mut notes = Vec::new();
    // Which JSON key set each of this plugin's keys.
    let mut set: Vec<(String, String)> = Vec::new();
    let mut line = |key: &str, value: String, from: &str, notes: &mut Vec<String>| {
        toml.push_str(&format!("{key} = {value}\n"));
        notes.push(format!("{from} → {key} = {value}"));
        set.push((from.to_owned(), key.to_owned()));
    };
    let text_of = |key: &str, value: &Value| match value {
        Value::String(s) => Ok(s.clone()),
        other => Err(refuse(format!("`{key}` is {other}; write a string"))),
    };
    let quoted = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let seen = |key: &str| object.contains_key(key);
    let mode = match object.get("mode") {
        None => "FULL_BACKUP".to_owned(),
        Some(v) => text_of("mode", v)?,
    };
    let cairn_mode = match mode.as_str() {
        "FULL_BACKUP" => "full",
        "INCREMENTAL_BACKUP" => "incremental",
        "EXPORT" => "export",
        other => {
            return Err(refuse(format!(
                "`mode` is {other:?}; OrientDB's modes are \"FULL_BACKUP\", \"INCREMENTAL_BACKUP\" and \"EXPORT\""
            )));
        }
    };
    for (key, value) in &object {
        match key.as_str() {
            "enabled" => match value {
                Value::Bool(b) => line("enabled", b.to_string(), key, &mut notes),
                other => return Err(refuse(format!("`enabled` is {other}; write true or false"))),
            },
            "mode" => line("mode", quoted(cairn_mode), key, &mut notes),
            "exportOptions" => {
                for (cairn, value) in export_options(&text_of(key, value)?).map_err(refuse)? {
                    if cairn_mode != "export" {
                        return Err(refuse(format!(
                            "`exportOptions` sets {cairn}, but mode is {mode:?}; it applies to \"EXPORT\""
                        )));
                    }
                    line(cairn, value, key, &mut notes);
                }
            }
            "delay" => line("delay", quoted(&text_of(key, value)?), key, &mut notes),
            "firstTime" => line("first_time", quoted(&text_of(key, value)?), key, &mut notes),
            "targetDirectory" => line(
                "target_directory",
                quoted(&text_of(key, value)?),
                key,
                &mut notes,
            ),
            // OrientDB's incremental backups are named by the server too.
            "targetFileName" if cairn_mode == "incremental" => notes.push(format!(
                "targetFileName {} not used: incremental archives are named <db>-<UTC time>-full.zip or -incr.zip so that each finds its parent",
                quoted(&text_of(key, value)?)
            )),
            "targetFileName" => line(
                "target_file_name",
                quoted(&text_of(key, value)?),
                key,
                &mut notes,
            ),
            "dbInclude" | "dbExclude" => {
                let names = names(key, value).map_err(refuse)?;
                let list: Vec<String> = names.iter().map(|n| quoted(n)).collect();
                let cairn = if key == "dbInclude" {
                    "db_include"
                } else {
                    "db_exclude"
                };
                line(cairn, format!("[{}]", list.join(", ")), key, &mut notes);
            }
            "compressionLevel" | "bufferSize" => match value {
                Value::Number(n) if n.is_i64() => {
                    let cairn = if key == "bufferSize" {
                        "buffer_size"
                    } else {
                        "compression_level"
                    };
                    line(cairn, n.to_string(), key, &mut notes);
                }
                other => return Err(refuse(format!("`{key}` is {other}; write a number"))),
            },
            other => {
                return Err(refuse(format!(
                    "`{other}` is not a key of OrientDB's automatic-backup.json this plugin reads (enabled, mode, exportOptions, delay, firstTime, targetDirectory, targetFileName, dbInclude, dbExclude, compressionLevel, bufferSize)"
                )));
            }
        }
    }
    // OrientDB's defaults for what is not written.
    for (key, cairn, default) in [
        ("delay", "delay", quoted("4h")),
        ("firstTime", "first_time", quoted("23:00:00")),
        ("targetDirectory", "target_directory", quoted("backup")),
    ] {
        if !seen(key) {
            line(
                cairn,
                default,
                &format!("{key} (OrientDB's default)"),
                &mut notes,
            );
        }
    }
    if !seen("compressionLevel") && cairn_mode != "export" {
        line(
            "compression_level",
            "9".into(),
            "compressionLevel (OrientDB's default)",
            &mut notes,
        );
    }
    if !seen("mode") {
        line(
            "mode",
            quoted(cairn_mode),
            "mode (OrientDB's default)",
            &mut notes,
        );
    }
    // OrientDB's times are the JVM's local time; its file has no zone of its own.
    match local_zone {
        Some(zone) => line(
            "timezone",
            quoted(zone),
            "firstTime's zone (OrientDB's: the server's local time)",
            &mut notes,
        ),
        None => line(
            "timezone",
            quoted("UTC"),
            "firstTime's zone (the server's local zone is not an IANA name: set TZ=Area/City for local times)",
            &mut notes,
        ),
    }
    // Two JSON keys for one setting (`compressionLevel` and `exportOptions`'s
    // -compressionLevel): refused by their names, not as a duplicate in text never written.
    for (i, (from, key)) in set.iter().enumerate() {
        if let Some((earlier, _)) = set[..i].iter().find(|(_, k)| k == key) {
            return Err(refuse(format!(
                "`{earlier}` and `{from}` both set {key}; keep one"
            )));
        }
    }
    Ok((toml, notes))
}

/// `dbInclude` / `dbExclude`: an array of names, or one string of names separated by commas.
fn names(key: &str, value: &Value) -> Result<Vec<String>, String> {
    let names: Vec<String> = match value {
        Value::String(s) => s.split(',').map(|n| n.trim().to_owned()).collect(),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(s.trim().to_owned()),
                other => Err(format!("`{key}` holds {other}; write names as strings")),
            })
            .collect::<Result<_, _>>()?,
        other => {
            return Err(format!(
                "`{key}` is {other}; write an array of names or one string \"a, b\""
            ));
        }
    };
    Ok(names.into_iter().filter(|n| !n.is_empty()).collect())
}

/// OrientDB's `exportOptions` string: the options Cairn's exports have, mapped; the rest
/// refused by name (an export is always the whole database).
fn export_options(text: &str) -> Result<Vec<(&'static str, String)>, String> {
    let mut mapped = Vec::new();
    for option in text.split_whitespace() {
        let (name, value) = option.split_once('=').unwrap_or((option, ""));
        let cairn = match name {
            "-compressionLevel" => "compression_level",
            "-compressionBuffer" => "buffer_size",
            other => {
                return Err(format!(
                    "`exportOptions` has {other}, which Cairn's exports do not have (they hold the whole database); only -compressionLevel and -compressionBuffer map"
                ));
            }
        };
        if value.parse::<i64>().is_err() {
            return Err(format!(
                "`exportOptions` has {option}; write {name}=<number>"
            ));
        }
        mapped.push((cairn, value.to_owned()));
    }
    Ok(mapped)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// OrientDB's documented default config.
    const DOCUMENTED: &str = r#"{
  "enabled": true,
  "mode": "FULL_BACKUP",
  "exportOptions": "",
  "delay": "4h",
  "firstTime": "23:00:00",
  "targetDirectory": "backup",
  "targetFileName": "${DBNAME}-${DATE:yyyyMMddHHmmss}.zip",
  "compressionLevel": 9,
  "bufferSize": 1048576
}"#;

    #[test]
    fn the_documented_config_maps_key_by_key() {
        assert!(is_orientdb_form(DOCUMENTED));
        assert!(!is_orientdb_form("schedule = \"0 2 * * *\""));
        let (toml, notes) = translate(DOCUMENTED, Some("Europe/Berlin")).unwrap();
        for expected in [
            "enabled = true",
            "mode = \"full\"",
            "delay = \"4h\"",
            "first_time = \"23:00:00\"",
            "target_directory = \"backup\"",
            "target_file_name = \"${DBNAME}-${DATE:yyyyMMddHHmmss}.zip\"",
            "compression_level = 9",
            "buffer_size = 1048576",
            "timezone = \"Europe/Berlin\"",
        ] {
            assert!(toml.lines().any(|l| l == expected), "{expected} in {toml}");
        }
        assert!(
            notes
                .iter()
                .any(|n| n == "firstTime → first_time = \"23:00:00\""),
            "{notes:?}"
        );
    }

    #[test]
    fn the_documented_config_is_a_policy() {
        let now = chrono::Utc::now();
        let policy = crate::config::Policy::from_config(
            &cairn_plugin_api::PluginConfig::new(DOCUMENTED),
            now,
        )
        .unwrap();
        assert!(policy.enabled);
        assert_eq!(policy.target_directory, "backup");
        assert!(
            policy.backup_options.iter().any(
                |(k, v)| *k == "compression_level" && *v == cairn_plugin_api::Value::Integer(9)
            ),
            "{:?}",
            policy.backup_options
        );
        // A bad value is refused by the plugin's own checks, naming its key.
        let bad = DOCUMENTED.replace("\"4h\"", "\"4 hours\"");
        let message =
            crate::config::Policy::from_config(&cairn_plugin_api::PluginConfig::new(bad), now)
                .unwrap_err()
                .to_string();
        assert!(message.contains("delay"), "{message}");
    }

    #[test]
    fn defaults_lists_and_export_options_are_orientdbs() {
        let (toml, notes) = translate(
            r#"{"mode": "EXPORT", "dbInclude": "sales, crm", "dbExclude": ["tmp"], "exportOptions": "-compressionLevel=3"}"#,
            None,
        )
        .unwrap();
        // A local zone that is no IANA name reads times in UTC, and says how to change it.
        assert!(toml.contains("timezone = \"UTC\""), "{toml}");
        assert!(notes.iter().any(|n| n.contains("set TZ=")), "{notes:?}");
        assert!(toml.contains("db_include = [\"sales\", \"crm\"]"), "{toml}");
        assert!(toml.contains("db_exclude = [\"tmp\"]"), "{toml}");
        assert!(toml.contains("compression_level = 3"), "{toml}");
        assert!(toml.contains("delay = \"4h\""), "{toml}");
        assert!(
            notes.iter().any(|n| n.contains("OrientDB's default")),
            "{notes:?}"
        );
        for (json, says) in [
            (r#"{"mode": "DIFFERENTIAL"}"#, "OrientDB's modes"),
            (r#"{"retention": 3}"#, "`retention` is not a key"),
            (
                r#"{"mode": "EXPORT", "exportOptions": "-excludeAll"}"#,
                "-excludeAll",
            ),
            (
                r#"{"exportOptions": "-compressionLevel=3"}"#,
                "applies to \"EXPORT\"",
            ),
            (r#"{"enabled": "yes"}"#, "write true or false"),
            (
                r#"{"mode": "EXPORT", "compressionLevel": 9, "exportOptions": "-compressionLevel=3"}"#,
                "both set compression_level",
            ),
            ("{\"delay\": ", "line 1"),
        ] {
            let message = translate(json, None).unwrap_err().to_string();
            assert!(message.contains(says), "{json}: {message}");
        }
    }
}
