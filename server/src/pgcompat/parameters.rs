//! PostgreSQL's run-time parameters as a session sees them: the ones clients and drivers set
//! and read at connect (`application_name`, `DateStyle`, `TimeZone`, `extra_float_digits`,
//! `search_path`…), with PostgreSQL's defaults, and custom ones (`myapp.tenant`, any name
//! with a dot), which PostgreSQL also keeps for whoever sets them. Cairn stores them per
//! session and answers `SHOW`, `current_setting()` and `set_config()` with them; what they
//! would change in PostgreSQL (a date's output style, a time zone's conversions) Cairn does
//! not do, except that a client encoding other than UTF8 is refused, since Cairn speaks only
//! UTF8. The three timeouts Cairn honours live in `sql/settings.rs`.

use std::collections::BTreeMap;

/// A parameter PostgreSQL knows: its name as `SHOW ALL` spells it, its default, whether a
/// session may change it, and what it is.
struct Known {
    name: &'static str,
    default: &'static str,
    settable: bool,
    description: &'static str,
}

const fn known(
    name: &'static str,
    default: &'static str,
    settable: bool,
    description: &'static str,
) -> Known {
    Known {
        name,
        default,
        settable,
        description,
    }
}

/// What the server says it is, at startup and in `SHOW server_version`: clients read the
/// leading number as PostgreSQL's major version to pick features.
pub const SERVER_VERSION: &str = concat!("15.0 (Cairn ", env!("CARGO_PKG_VERSION"), ")");

/// Sorted by lowercase name.
const KNOWN: &[Known] = &[
    // What pg_dump sets before it reads the catalogs.
    known(
        "check_function_bodies",
        "on",
        true,
        "Check routine bodies during CREATE FUNCTION and CREATE PROCEDURE.",
    ),
    known(
        "default_table_access_method",
        "heap",
        true,
        "Sets the default table access method for new tables.",
    ),
    known(
        "default_tablespace",
        "",
        true,
        "Sets the default tablespace to create tables and indexes in.",
    ),
    known(
        "quote_all_identifiers",
        "off",
        true,
        "When generating SQL fragments, quote all identifiers.",
    ),
    known("row_security", "on", true, "Enable row security."),
    known(
        "synchronize_seqscans",
        "on",
        true,
        "Enable synchronized sequential scans.",
    ),
    known(
        "xmloption",
        "content",
        true,
        "Sets whether XML data in implicit parsing and serialization operations is to be considered as documents or content fragments.",
    ),
    known(
        "application_name",
        "",
        true,
        "Sets the application name to be reported in statistics and logs.",
    ),
    known(
        "bytea_output",
        "hex",
        true,
        "Sets the output format for bytea.",
    ),
    known(
        "client_encoding",
        "UTF8",
        true,
        "Sets the client's character set encoding (Cairn speaks UTF8 only).",
    ),
    known(
        "client_min_messages",
        "notice",
        true,
        "Sets the message levels that are sent to the client.",
    ),
    known(
        "DateStyle",
        "ISO, MDY",
        true,
        "Sets the display format for date and time values.",
    ),
    known(
        "default_transaction_isolation",
        "serializable",
        true,
        "Sets the transaction isolation level of each new transaction (SQLite's are serializable).",
    ),
    known(
        "default_transaction_read_only",
        "off",
        true,
        "Sets the default read-only status of new transactions.",
    ),
    known(
        "escape_string_warning",
        "on",
        true,
        "Warn about backslash escapes in ordinary string literals.",
    ),
    known(
        "extra_float_digits",
        "1",
        true,
        "Sets the number of digits displayed for floating-point values.",
    ),
    known(
        "integer_datetimes",
        "on",
        false,
        "Shows whether datetimes are integer based.",
    ),
    known(
        "IntervalStyle",
        "postgres",
        true,
        "Sets the display format for interval values.",
    ),
    known("jit", "off", true, "Allow JIT compilation."),
    known(
        "lc_messages",
        "C",
        true,
        "Sets the language in which messages are displayed.",
    ),
    known(
        "lc_monetary",
        "C",
        true,
        "Sets the locale for formatting monetary amounts.",
    ),
    known(
        "lc_numeric",
        "C",
        true,
        "Sets the locale for formatting numbers.",
    ),
    known(
        "lc_time",
        "C",
        true,
        "Sets the locale for formatting date and time values.",
    ),
    known(
        "max_identifier_length",
        "63",
        false,
        "Shows the maximum identifier length.",
    ),
    known(
        "password_encryption",
        "scram-sha-256",
        true,
        "Chooses the algorithm for encrypting passwords (Cairn keeps SCRAM-SHA-256 verifiers only).",
    ),
    known("row_security", "on", true, "Enable row security."),
    known(
        "search_path",
        "\"$user\", public",
        true,
        "Sets the schema search order for names that are not schema-qualified.",
    ),
    known(
        "server_encoding",
        "UTF8",
        false,
        "Shows the server (database) character set encoding.",
    ),
    known(
        "server_version",
        SERVER_VERSION,
        false,
        "Shows the server version (the PostgreSQL version Cairn answers as).",
    ),
    known(
        "server_version_num",
        "150000",
        false,
        "Shows the server version as an integer.",
    ),
    known(
        "standard_conforming_strings",
        "on",
        true,
        "Causes '...' strings to treat backslashes literally.",
    ),
    known(
        "synchronous_commit",
        "on",
        true,
        "Sets the current transaction's synchronization level (Cairn's commits are always durable when answered).",
    ),
    known(
        "TimeZone",
        "UTC",
        true,
        "Sets the time zone for displaying and interpreting time stamps.",
    ),
    known(
        "transaction_isolation",
        "serializable",
        true,
        "Sets the current transaction's isolation level.",
    ),
    known(
        "transaction_read_only",
        "off",
        true,
        "Sets the current transaction's read-only status.",
    ),
    known(
        "work_mem",
        "4MB",
        true,
        "Sets the maximum memory to be used for query workspaces.",
    ),
];

/// The parameters PostgreSQL tells its clients of (ParameterStatus) at startup and
/// whenever they change.
const REPORTED: &[&str] = &[
    "application_name",
    "client_encoding",
    "DateStyle",
    "default_transaction_read_only",
    "integer_datetimes",
    "IntervalStyle",
    "server_encoding",
    "server_version",
    "standard_conforming_strings",
    "TimeZone",
];

fn lookup(name: &str) -> Option<&'static Known> {
    KNOWN.iter().find(|k| k.name.eq_ignore_ascii_case(name))
}

/// Why a parameter could not be set or shown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParameterError {
    #[error(
        "unrecognized configuration parameter \"{0}\" (a custom one needs a dot in its name: myapp.{0})"
    )]
    Unknown(String),
    #[error("parameter \"{0}\" cannot be changed")]
    ReadOnly(String),
    #[error("invalid value for parameter \"{name}\": \"{value}\": {why}")]
    Invalid {
        name: String,
        value: String,
        why: &'static str,
    },
    #[error(
        "too many custom parameters in this session (at most {MAX_CUSTOM}); RESET ALL or DISCARD ALL lets go of them"
    )]
    TooMany,
}

/// How many custom (`a.b`) parameters one session may hold, so that a client setting new
/// names in a loop cannot grow the server's memory without end. Values are bounded by the
/// message size limit already.
pub const MAX_CUSTOM: usize = 1024;

impl ParameterError {
    pub fn sqlstate(&self) -> &'static str {
        match self {
            ParameterError::Unknown(_) => crate::sqlstate::UNDEFINED_OBJECT,
            ParameterError::ReadOnly(_) => crate::sqlstate::CANT_CHANGE_RUNTIME_PARAM,
            ParameterError::Invalid { .. } => crate::sqlstate::INVALID_PARAMETER_VALUE,
            ParameterError::TooMany => crate::sqlstate::PROGRAM_LIMIT_EXCEEDED,
        }
    }
}

/// One session's parameters: what it set, over the defaults.
#[derive(Debug, Clone, Default)]
pub struct Parameters {
    /// Lowercase name → value, set for the session.
    session: BTreeMap<String, String>,
    /// Set with `SET LOCAL` (or `set_config(…, true)`): until the transaction ends.
    local: BTreeMap<String, String>,
    /// Defaults the client gave in its startup packet (`application_name`, `DateStyle`…).
    startup: BTreeMap<String, String>,
}

impl Parameters {
    /// The parameters of a session whose startup packet gave `given` (unknown names there
    /// are ignored, as the driver options PostgreSQL would refuse are not worth a refused
    /// connection).
    pub fn starting_with<'a>(given: impl IntoIterator<Item = (&'a str, &'a str)>) -> Parameters {
        let mut parameters = Parameters::default();
        for (name, value) in given {
            if let Ok(key) = settable(name, value) {
                parameters.startup.insert(key, value.to_owned());
            }
        }
        parameters
    }

    /// Sets `name` for the session (or, `local`, until the transaction ends); `None` puts
    /// back the default.
    pub fn set(
        &mut self,
        name: &str,
        value: Option<&str>,
        local: bool,
    ) -> Result<(), ParameterError> {
        let key = match value {
            Some(value) => settable(name, value)?,
            None => settable(name, default_of(name).unwrap_or(""))?,
        };
        let new_custom = value.is_some()
            && lookup(&key).is_none()
            && !self.session.contains_key(&key)
            && !self.local.contains_key(&key)
            && !self.startup.contains_key(&key);
        if new_custom && self.custom_count() >= MAX_CUSTOM {
            return Err(ParameterError::TooMany);
        }
        match (value, local) {
            (Some(value), true) => {
                self.local.insert(key, canonical(name, value));
            }
            (Some(value), false) => {
                // A session value replaces a local one too, as in PostgreSQL.
                self.local.remove(&key);
                self.session.insert(key, canonical(name, value));
            }
            // RESET, or DEFAULT: back to what the startup packet said, else the default.
            (None, false) => {
                self.local.remove(&key);
                self.session.remove(&key);
            }
            (None, true) => match self.reset_value(&key) {
                Some(reset) => {
                    self.local.insert(key, reset);
                }
                None => {
                    self.local.remove(&key);
                }
            },
        }
        Ok(())
    }

    /// How many distinct custom parameters are held.
    fn custom_count(&self) -> usize {
        let mut names: Vec<&String> = self
            .session
            .keys()
            .chain(self.local.keys())
            .chain(self.startup.keys())
            .filter(|name| lookup(name).is_none())
            .collect();
        names.sort();
        names.dedup();
        names.len()
    }

    /// What RESET gives `key` back: the startup packet's value, else the default.
    fn reset_value(&self, key: &str) -> Option<String> {
        self.startup
            .get(key)
            .cloned()
            .or_else(|| default_of(key).map(str::to_owned))
    }

    /// The value `SHOW name` and `current_setting(name)` give; `None` for a custom
    /// parameter no one set.
    pub fn get(&self, name: &str) -> Result<Option<String>, ParameterError> {
        let key = name.to_ascii_lowercase();
        let set = self
            .local
            .get(&key)
            .or_else(|| self.session.get(&key))
            .or_else(|| self.startup.get(&key))
            .cloned();
        match (set, lookup(name)) {
            (Some(value), _) => Ok(Some(value)),
            (None, Some(known)) => Ok(Some(known.default.to_owned())),
            (None, None) if name.contains('.') => Ok(None),
            (None, None) => Err(ParameterError::Unknown(name.to_owned())),
        }
    }

    /// The name as PostgreSQL spells it in `SHOW`'s column (`TimeZone`, `DateStyle`).
    pub fn display_name(name: &str) -> String {
        lookup(name).map_or_else(|| name.to_ascii_lowercase(), |k| k.name.to_owned())
    }

    /// Every parameter with its value and description, for `SHOW ALL`.
    pub fn all(&self) -> Vec<[String; 3]> {
        let mut rows: Vec<[String; 3]> = KNOWN
            .iter()
            .map(|k| {
                let value = self
                    .get(k.name)
                    .ok()
                    .flatten()
                    .unwrap_or_else(|| k.default.to_owned());
                [k.name.to_owned(), value, k.description.to_owned()]
            })
            .collect();
        let custom = self
            .startup
            .iter()
            .chain(&self.session)
            .chain(&self.local)
            .filter(|(name, _)| lookup(name).is_none());
        for (name, _) in custom {
            if !rows.iter().any(|r| r[0] == *name)
                && let Ok(Some(value)) = self.get(name)
            {
                rows.push([name.clone(), value, String::new()]);
            }
        }
        rows.sort_by_key(|r| r[0].to_ascii_lowercase());
        rows
    }

    /// The reported parameters with their values now, by the names clients know them by.
    pub fn reported(&self) -> Vec<(String, String)> {
        REPORTED
            .iter()
            .filter_map(|name| {
                let value = self.get(name).ok().flatten()?;
                Some(((*name).to_owned(), value))
            })
            .collect()
    }

    /// `name`'s value now, if clients are told of its changes.
    pub fn reported_one(&self, name: &str) -> Option<(String, String)> {
        let known = REPORTED.iter().find(|r| r.eq_ignore_ascii_case(name))?;
        let value = self.get(known).ok().flatten()?;
        Some(((*known).to_owned(), value))
    }

    /// The transaction ended: what `SET LOCAL` set is gone.
    pub fn transaction_ended(&mut self) {
        self.local.clear();
    }

    /// `RESET ALL`: back to the startup packet's values and the defaults.
    pub fn reset_all(&mut self) {
        self.session.clear();
        self.local.clear();
    }
}

/// The parameter's default, if PostgreSQL knows it (also what the startup packet's answer
/// reports, so that SHOW agrees with it).
pub fn default_of(name: &str) -> Option<&'static str> {
    lookup(name).map(|k| k.default)
}

/// Checks that `name` may be set to `value`; its key (lowercase name) if so.
fn settable(name: &str, value: &str) -> Result<String, ParameterError> {
    match lookup(name) {
        Some(known) if !known.settable => Err(ParameterError::ReadOnly(known.name.to_owned())),
        Some(known) if known.name == "client_encoding" => {
            let utf8 = ["utf8", "utf-8", "unicode"]
                .iter()
                .any(|e| value.eq_ignore_ascii_case(e));
            if utf8 {
                Ok(known.name.to_owned())
            } else {
                Err(ParameterError::Invalid {
                    name: known.name.to_owned(),
                    value: value.to_owned(),
                    why: "Cairn speaks UTF8 only; set the client's encoding to UTF8",
                })
            }
        }
        Some(known)
            if known.name == "password_encryption"
                && !value.eq_ignore_ascii_case("scram-sha-256") =>
        {
            Err(ParameterError::Invalid {
                name: known.name.to_owned(),
                value: value.to_owned(),
                why: "Cairn keeps SCRAM-SHA-256 verifiers only; set it to scram-sha-256",
            })
        }
        Some(known) => Ok(known.name.to_ascii_lowercase()),
        None if name.contains('.') && !name.starts_with('.') && !name.ends_with('.') => {
            Ok(name.to_ascii_lowercase())
        }
        None => Err(ParameterError::Unknown(name.to_owned())),
    }
}

/// The value as `SHOW` gives it back: PostgreSQL's spelling of the encoding.
fn canonical(name: &str, value: &str) -> String {
    if name.eq_ignore_ascii_case("client_encoding") {
        "UTF8".to_owned()
    } else {
        value.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_session_sets_it_reads_back_over_the_defaults_and_reset_puts_them_back() {
        let mut p = Parameters::starting_with([("application_name", "psql"), ("bogus", "1")]);
        assert_eq!(p.get("application_name").unwrap().as_deref(), Some("psql"));
        assert_eq!(p.get("datestyle").unwrap().as_deref(), Some("ISO, MDY"));
        p.set("TimeZone", Some("Europe/Paris"), false).unwrap();
        assert_eq!(p.get("timezone").unwrap().as_deref(), Some("Europe/Paris"));
        p.set("extra_float_digits", Some("3"), true).unwrap();
        assert_eq!(p.get("extra_float_digits").unwrap().as_deref(), Some("3"));
        p.transaction_ended();
        assert_eq!(p.get("extra_float_digits").unwrap().as_deref(), Some("1"));
        p.set("myapp.tenant", Some("42"), false).unwrap();
        assert_eq!(p.get("MyApp.Tenant").unwrap().as_deref(), Some("42"));
        assert_eq!(p.get("myapp.other").unwrap(), None);
        assert!(
            p.all()
                .iter()
                .any(|r| r[0] == "myapp.tenant" && r[1] == "42")
        );
        // RESET goes back to what the startup packet said, not to the default.
        p.set("application_name", Some("other"), false).unwrap();
        p.set("application_name", None, false).unwrap();
        assert_eq!(p.get("application_name").unwrap().as_deref(), Some("psql"));
        p.set("TimeZone", None, true).unwrap();
        assert_eq!(p.get("timezone").unwrap().as_deref(), Some("UTC"));
        p.transaction_ended();
        assert_eq!(p.get("timezone").unwrap().as_deref(), Some("Europe/Paris"));
        p.reset_all();
        assert_eq!(p.get("timezone").unwrap().as_deref(), Some("UTC"));
        assert_eq!(Parameters::display_name("timezone"), "TimeZone");
    }

    #[test]
    fn a_session_holds_a_bounded_number_of_custom_parameters() {
        let mut p = Parameters::default();
        for n in 0..MAX_CUSTOM {
            p.set(&format!("app.p{n}"), Some("x"), false).unwrap();
        }
        assert_eq!(
            p.set("app.one_more", Some("x"), false),
            Err(ParameterError::TooMany)
        );
        // Setting one it has again, or a known one, still works; RESET ALL lets go.
        p.set("app.p0", Some("y"), false).unwrap();
        p.set("TimeZone", Some("UTC"), false).unwrap();
        p.reset_all();
        p.set("app.one_more", Some("x"), false).unwrap();
    }

    #[test]
    fn unknown_read_only_and_foreign_encoding_settings_are_refused_with_why() {
        let mut p = Parameters::default();
        let unknown = p.set("no_such_thing", Some("1"), false).unwrap_err();
        assert_eq!(unknown.sqlstate(), crate::sqlstate::UNDEFINED_OBJECT);
        assert!(
            unknown.to_string().contains("myapp.no_such_thing"),
            "{unknown}"
        );
        assert!(p.get("no_such_thing").is_err());
        let fixed = p.set("server_version", Some("9.6"), false).unwrap_err();
        assert_eq!(fixed, ParameterError::ReadOnly("server_version".into()));
        let latin = p.set("client_encoding", Some("LATIN1"), false).unwrap_err();
        assert!(latin.to_string().contains("UTF8 only"), "{latin}");
        p.set("client_encoding", Some("utf-8"), false).unwrap();
        assert_eq!(p.get("client_encoding").unwrap().as_deref(), Some("UTF8"));
    }
}
