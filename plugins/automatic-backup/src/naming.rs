//! Archive file names from OrientDB's template: `${DBNAME}` and `${DATE:yyyyMMddHHmmss}`
//! (SimpleDateFormat letters y, M, d, H, m, s, S), and the test that a file name is one the
//! template makes for a database, which is what retention is allowed to consider.

use chrono::{DateTime, Datelike, Timelike};
use chrono_tz::Tz;

/// A parsed `target_file_name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Database,
    /// A date field: the pattern letter and how many digits it prints.
    Field(char, usize),
}

impl Template {
    /// Parses `text`; it must name the database and the date (every field down to its
    /// finest, so names never repeat), and be a file name that is not one of Cairn's
    /// temporary names.
    pub fn parse(text: &str) -> Result<Template, String> {
        if text.contains('/') || text.contains('\\') {
            return Err(format!(
                "{text:?} contains a directory separator; put directories in target_directory"
            ));
        }
        if text.starts_with(TEMPORARY_PREFIX) {
            return Err(format!(
                "{text:?} starts with {TEMPORARY_PREFIX:?}, which names Cairn's temporary files (removed at every start); choose another name"
            ));
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            push_text(&mut parts, &rest[..start]);
            let end = rest[start..]
                .find('}')
                .map(|e| start + e)
                .ok_or_else(|| format!("{text:?} has an unclosed \"${{\""))?;
            let variable = &rest[start + 2..end];
            if variable == "DBNAME" {
                parts.push(Part::Database);
            } else if let Some(pattern) = variable.strip_prefix("DATE:") {
                parse_date(pattern, &mut parts)?;
            } else {
                return Err(format!(
                    "{text:?} uses ${{{variable}}}; the variables are ${{DBNAME}} and ${{DATE:yyyyMMddHHmmss}}"
                ));
            }
            rest = &rest[end + 1..];
        }
        push_text(&mut parts, rest);
        if !parts.contains(&Part::Database) {
            return Err(format!(
                "{text:?} has no ${{DBNAME}}, so the archives of two databases would collide"
            ));
        }
        if !parts.iter().any(|p| matches!(p, Part::Field(..))) {
            return Err(format!(
                "{text:?} has no ${{DATE:…}}, so each run would overwrite the last name"
            ));
        }
        let template = Template { parts };
        // Down to the finest field, every coarser one is there: "HHmm" alone repeats daily.
        let finest = FIELDS
            .iter()
            .rposition(|(letter, _)| template.has(*letter))
            .unwrap_or(0);
        if let Some((letter, pattern)) = FIELDS[..finest]
            .iter()
            .find(|(letter, _)| !template.has(*letter))
        {
            let (_, finest_pattern) = FIELDS[finest];
            return Err(format!(
                "{text:?} has {finest_pattern} but no {pattern} (`{letter}`), so its names repeat; write every field from the year down, e.g. ${{DATE:yyyyMMddHHmmss}}"
            ));
        }
        Ok(template)
    }

    fn has(&self, letter: char) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, Part::Field(l, _) if *l == letter))
    }

    /// Whether every name ends with `suffix` (".zip", ".json.gz").
    pub fn ends_with(&self, suffix: &str) -> bool {
        matches!(self.parts.last(), Some(Part::Text(text)) if text.ends_with(suffix))
    }

    /// The file name for `database` at `at` (in the schedule's zone).
    pub fn render(&self, database: &str, at: DateTime<Tz>) -> String {
        let mut name = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => name.push_str(text),
                Part::Database => name.push_str(database),
                Part::Field(letter, width) => {
                    let value = field_value(*letter, &at);
                    let value = if *letter == 'y' && *width == 2 {
                        value % 100
                    } else {
                        value
                    };
                    name.push_str(&format!("{value:0width$}"));
                }
            }
        }
        name
    }

    /// Whether `file_name` is a name this template makes for `database`.
    pub fn matches(&self, database: &str, file_name: &str) -> bool {
        let mut rest = file_name;
        for part in &self.parts {
            let taken = match part {
                Part::Text(text) => rest.strip_prefix(text.as_str()),
                Part::Database => rest.strip_prefix(database),
                Part::Field(_, width) => rest
                    .get(..*width)
                    .filter(|digits| digits.bytes().all(|b| b.is_ascii_digit()))
                    .map(|_| &rest[*width..]),
            };
            match taken {
                Some(after) => rest = after,
                None => return false,
            }
        }
        rest.is_empty()
    }
}

/// Whether `file` is a name the server gives a new member of a collection of `database`
/// (`BACKUP DATABASE … INTO`): `<database>-<YYYYMMDDTHHMMSS.mmm>Z-full.zip` or `…-incr.zip`.
pub fn is_collection_member(database: &str, file: &str) -> bool {
    let Some(rest) = file
        .strip_prefix(database)
        .and_then(|rest| rest.strip_prefix('-'))
    else {
        return false;
    };
    let Some(time) = rest
        .strip_suffix("Z-full.zip")
        .or_else(|| rest.strip_suffix("Z-incr.zip"))
    else {
        return false;
    };
    chrono::NaiveDateTime::parse_from_str(time, "%Y%m%dT%H%M%S%.3f").is_ok() && time.len() == 19
}

/// The start of every temporary file Cairn writes (and removes at start-up).
pub const TEMPORARY_PREFIX: &str = ".cairn-tmp-";

/// The date fields from the coarsest: letter, and as written.
const FIELDS: [(char, &str); 7] = [
    ('y', "yyyy"),
    ('M', "MM"),
    ('d', "dd"),
    ('H', "HH"),
    ('m', "mm"),
    ('s', "ss"),
    ('S', "SSS"),
];

fn push_text(parts: &mut Vec<Part>, text: &str) {
    if !text.is_empty() {
        parts.push(Part::Text(text.to_owned()));
    }
}

fn parse_date(pattern: &str, parts: &mut Vec<Part>) -> Result<(), String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let run = chars[i..].iter().take_while(|&&x| x == c).count();
        if c.is_ascii_alphabetic() {
            let width = match (c, run) {
                ('y', 4) | ('y', 2) => run,
                ('M' | 'd' | 'H' | 'm' | 's', 2) => 2,
                ('S', 3) => 3,
                _ => {
                    return Err(format!(
                        "the date pattern {pattern:?} has {:?}; use yyyy (or yy), MM, dd, HH, mm, ss and SSS",
                        c.to_string().repeat(run)
                    ));
                }
            };
            parts.push(Part::Field(c, width));
        } else if c == '/' || c == '\\' {
            return Err(format!(
                "the date pattern {pattern:?} contains a directory separator"
            ));
        } else {
            push_text(parts, &c.to_string().repeat(run));
        }
        i += run;
    }
    Ok(())
}

fn field_value(letter: char, at: &DateTime<Tz>) -> u32 {
    match letter {
        'y' => u32::try_from(at.year()).unwrap_or(0),
        'M' => at.month(),
        'd' => at.day(),
        'H' => at.hour(),
        'm' => at.minute(),
        's' => at.second(),
        _ => at.timestamp_subsec_millis(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use chrono_tz::Europe::Berlin;

    #[test]
    fn renders_orientdbs_default_and_matches_only_its_own_names() {
        let template = Template::parse("${DBNAME}-${DATE:yyyyMMddHHmmss}.zip").unwrap();
        let at = Berlin.with_ymd_and_hms(2026, 3, 9, 4, 5, 6).unwrap();
        let name = template.render("sales", at);
        assert_eq!(name, "sales-20260309040506.zip");
        assert!(template.matches("sales", &name));
        for foreign in [
            "sales-20260309040506.zip.part",
            ".cairn-tmp-sales-20260309040506.zip",
            "sales-2026030904050.zip",
            "sales-2026030904050x.zip",
            "sales-x-20260309040506.zip",
            "notes.txt",
        ] {
            assert!(!template.matches("sales", foreign), "{foreign:?} matched");
        }
        // Another database's archive, even one whose name starts the same way.
        assert!(!template.matches("sales", "sales_eu-20260309040506.zip"));
        assert!(!template.matches("sales_eu", &name));
    }

    #[test]
    fn separators_and_short_years() {
        let template =
            Template::parse("nightly_${DATE:yy-MM-dd_HH.mm.ss.SSS}_${DBNAME}.zip").unwrap();
        let at = Berlin.with_ymd_and_hms(2026, 11, 21, 23, 59, 58).unwrap();
        let name = template.render("db", at);
        assert_eq!(name, "nightly_26-11-21_23.59.58.000_db.zip");
        assert!(template.matches("db", &name));
    }

    #[test]
    fn the_members_of_a_collection_are_named_by_the_server() {
        assert!(is_collection_member(
            "sales",
            "sales-20261202T020000.123Z-full.zip"
        ));
        assert!(is_collection_member(
            "sales",
            "sales-20261202T020000.123Z-incr.zip"
        ));
        for other in [
            "sales-eu-20261202T020000.123Z-full.zip",
            "sales-20261202T020000Z-full.zip",
            "sales-20261302T020000.123Z-full.zip",
            "sales-20261202T020000.123Z-diff.zip",
            "sales-20261202T020000.123Z-full.zip.unverified",
        ] {
            assert!(!is_collection_member("sales", other), "{other}");
        }
    }

    #[test]
    fn refuses_templates_that_would_collide_or_escape() {
        for bad in [
            "backup.zip",
            "${DBNAME}.zip",
            "${DATE:yyyyMMdd}.zip",
            "${DBNAME}-${DATE:yyyyMMddHHmmss",
            "${DBNAME}-${TIME}.zip",
            "${DBNAME}-${DATE:yyyyMMddQ}.zip",
            "../${DBNAME}-${DATE:yyyyMMddHHmmss}.zip",
            "${DBNAME}-${DATE:yyyy/MM}.zip",
            // Names that repeat: no day, or no date above the time.
            "${DBNAME}-${DATE:yyyyMM-HHmm}.zip",
            "${DBNAME}-${DATE:HHmmss}.zip",
            // A backup named like a temporary file is deleted at the next start.
            ".cairn-tmp-${DBNAME}-${DATE:yyyyMMddHHmmss}.zip",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
