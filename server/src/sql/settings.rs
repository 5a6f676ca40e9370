//! The session settings Cairn honours, as PostgreSQL spells and reads them:
//! `statement_timeout`, `lock_timeout` and `idle_in_transaction_session_timeout`. Set in the
//! config (server-wide and per user), as startup parameters (`options=-c name=value` or the
//! name itself) and with `SET` / `RESET` / `SHOW`.

use std::time::Duration;

/// A setting Cairn knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    StatementTimeout,
    LockTimeout,
    IdleInTransactionSessionTimeout,
}

impl Setting {
    pub const ALL: [Setting; 3] = [
        Setting::StatementTimeout,
        Setting::LockTimeout,
        Setting::IdleInTransactionSessionTimeout,
    ];

    pub fn named(name: &str) -> Option<Setting> {
        Setting::ALL
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name))
    }

    pub fn name(self) -> &'static str {
        match self {
            Setting::StatementTimeout => "statement_timeout",
            Setting::LockTimeout => "lock_timeout",
            Setting::IdleInTransactionSessionTimeout => "idle_in_transaction_session_timeout",
        }
    }
}

/// The three timeouts; `None` is 0, "no limit".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timeouts {
    pub statement: Option<Duration>,
    pub lock: Option<Duration>,
    pub idle_in_transaction: Option<Duration>,
}

impl Timeouts {
    pub fn get(&self, setting: Setting) -> Option<Duration> {
        match setting {
            Setting::StatementTimeout => self.statement,
            Setting::LockTimeout => self.lock,
            Setting::IdleInTransactionSessionTimeout => self.idle_in_transaction,
        }
    }

    pub fn set(&mut self, setting: Setting, value: Option<Duration>) {
        match setting {
            Setting::StatementTimeout => self.statement = value,
            Setting::LockTimeout => self.lock = value,
            Setting::IdleInTransactionSessionTimeout => self.idle_in_transaction = value,
        }
    }
}

/// PostgreSQL's form of a time setting: milliseconds, or a number with a unit (`us`, `ms`,
/// `s`, `min`, `h`, `d`). 0 means no limit.
pub fn parse_duration(text: &str) -> Result<Option<Duration>, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("invalid value {text:?}: write milliseconds, or a number with a unit such as \"5s\" or \"250ms\""))?;
    let millis = match unit.trim() {
        "" | "ms" => number,
        "us" => number / 1000.0,
        "s" => number * 1000.0,
        "min" => number * 60_000.0,
        "h" => number * 3_600_000.0,
        "d" => number * 86_400_000.0,
        other => {
            return Err(format!(
                "invalid unit {other:?} in {text:?}: valid units are us, ms, s, min, h and d"
            ));
        }
    };
    if !millis.is_finite() || millis > i32::MAX as f64 {
        return Err(format!(
            "{text:?} is out of range (at most {} ms)",
            i32::MAX
        ));
    }
    Ok((millis >= 1.0).then(|| Duration::from_millis(millis as u64)))
}

/// A setting as `SHOW` prints it.
pub fn show(value: Option<Duration>) -> String {
    match value {
        None => "0".into(),
        Some(d) if d.as_millis() % 1000 == 0 => format!("{}s", d.as_secs()),
        Some(d) => format!("{}ms", d.as_millis()),
    }
}

/// The settings a startup packet carries: as parameters of their own, or in `options` as
/// `-c name=value` (or `--name=value`).
pub fn from_startup<'a>(
    parameters: impl Iterator<Item = (&'a str, &'a str)>,
) -> Vec<(Setting, &'a str)> {
    let mut out = Vec::new();
    for (key, value) in parameters {
        if key == "options" {
            let mut words = value.split_ascii_whitespace();
            while let Some(word) = words.next() {
                let pair = match word {
                    "-c" => words.next(),
                    w => w.strip_prefix("-c").or_else(|| w.strip_prefix("--")),
                };
                if let Some((name, value)) = pair.and_then(|p| p.split_once('='))
                    && let Some(setting) = Setting::named(&name.replace('-', "_"))
                {
                    out.push((setting, value));
                }
            }
        } else if let Some(setting) = Setting::named(key) {
            out.push((setting, value));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_postgresql_reads_them() {
        assert_eq!(
            parse_duration("250").unwrap(),
            Some(Duration::from_millis(250))
        );
        assert_eq!(parse_duration("5s").unwrap(), Some(Duration::from_secs(5)));
        assert_eq!(
            parse_duration("1min").unwrap(),
            Some(Duration::from_secs(60))
        );
        assert_eq!(parse_duration("0").unwrap(), None);
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("-1").is_err());
        assert_eq!(show(Some(Duration::from_millis(1500))), "1500ms");
        assert_eq!(show(Some(Duration::from_secs(2))), "2s");
    }

    #[test]
    fn startup_options_carry_settings() {
        let params = [
            (
                "options",
                "-c statement_timeout=100 --lock-timeout=2s -c search_path=x",
            ),
            ("idle_in_transaction_session_timeout", "1s"),
            ("application_name", "x"),
        ];
        let found = from_startup(params.into_iter());
        assert_eq!(
            found,
            vec![
                (Setting::StatementTimeout, "100"),
                (Setting::LockTimeout, "2s"),
                (Setting::IdleInTransactionSessionTimeout, "1s"),
            ]
        );
    }
}
