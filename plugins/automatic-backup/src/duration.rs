//! Durations as operators write them: "30s", "30m", "4h", "1d", "2w", or sums such as "1h30m";
//! and `keep_within` spans as restic writes them ("1y6mo", "7d", "3h").

use std::time::Duration;

use chrono::{DateTime, Datelike, LocalResult, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

/// A number and its unit, as written.
fn terms(text: &str) -> Result<Vec<(u64, String)>, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("is empty; write a duration such as \"30m\", \"4h\" or \"1d\"".into());
    }
    let mut terms = Vec::new();
    let mut chars = trimmed.chars().peekable();
    while chars.peek().is_some() {
        let digits: String = std::iter::from_fn(|| chars.next_if(char::is_ascii_digit)).collect();
        let unit: String =
            std::iter::from_fn(|| chars.next_if(char::is_ascii_alphabetic)).collect();
        if digits.is_empty() {
            let what = if unit.is_empty() {
                chars.next().map(String::from).unwrap_or_default()
            } else {
                unit
            };
            return Err(format!("{text:?}: a number must come before {what:?}"));
        }
        if unit.is_empty() {
            return Err(format!(
                "{text:?} ends without a unit; write {digits}s, {digits}m, {digits}h or {digits}d"
            ));
        }
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("{text:?} is too long"))?;
        terms.push((n, unit));
    }
    Ok(terms)
}

/// Seconds per unit of a fixed duration; `m` is minutes.
fn fixed_unit(unit: &str) -> Option<u64> {
    Some(match unit {
        "s" => 1,
        "m" | "min" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return None,
    })
}

/// Parses `text` ("4h", "1h30m"; units s, m or min, h, d, w); the error says what is wrong,
/// for a message naming the key.
pub fn parse(text: &str) -> Result<Duration, String> {
    let mut total: u64 = 0;
    for (n, unit) in terms(text)? {
        let seconds = fixed_unit(&unit).ok_or_else(|| {
            format!(
                "{text:?} has the unit {unit:?}; units are s, m (minutes), h, d and w (\"1h30m\")"
            )
        })?;
        total = n
            .checked_mul(seconds)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(|| format!("{text:?} is too long"))?;
    }
    if total == 0 {
        return Err(format!("{text:?} is zero; write a positive duration"));
    }
    Ok(Duration::from_secs(total))
}

/// How far back `keep_within` reaches from the newest archive, as restic reads its
/// `--keep-within`: years, months and days on the calendar (in the schedule's zone), hours
/// and less as fixed time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    pub months: u32,
    pub days: u64,
    pub seconds: u64,
}

impl Span {
    /// Parses `text`: units y, mo (months), w, d, h, min, s ("1y6mo", "7d12h"). `m` is
    /// refused: restic reads it as months, Cairn's other durations as minutes.
    pub fn parse(text: &str) -> Result<Span, String> {
        let mut span = Span::default();
        for (n, unit) in terms(text)? {
            let too_long = || format!("{text:?} is too long");
            match unit.as_str() {
                "y" => {
                    let months = u32::try_from(n)
                        .ok()
                        .and_then(|y| y.checked_mul(12))
                        .ok_or_else(too_long)?;
                    span.months = span.months.checked_add(months).ok_or_else(too_long)?;
                }
                "mo" => {
                    let months = u32::try_from(n).map_err(|_| too_long())?;
                    span.months = span.months.checked_add(months).ok_or_else(too_long)?;
                }
                "w" | "d" => {
                    let days = if unit == "w" {
                        n.checked_mul(7)
                    } else {
                        Some(n)
                    };
                    span.days = days
                        .and_then(|d| span.days.checked_add(d))
                        .ok_or_else(too_long)?;
                }
                "h" | "min" | "s" => {
                    let seconds = fixed_unit(&unit).unwrap_or(1);
                    span.seconds = n
                        .checked_mul(seconds)
                        .and_then(|s| span.seconds.checked_add(s))
                        .ok_or_else(too_long)?;
                }
                "m" => {
                    return Err(format!(
                        "{text:?}: \"m\" is ambiguous here: restic's keep-within reads it as months, Cairn's other durations as minutes; write {n}mo for months or {n}min for minutes"
                    ));
                }
                other => {
                    return Err(format!(
                        "{text:?} has the unit {other:?}; keep_within takes y, mo (months), w, d, h, min and s (\"1y6mo\", \"7d\")"
                    ));
                }
            }
        }
        if span == Span::default() {
            return Err(format!("{text:?} is zero; write a positive span"));
        }
        Ok(span)
    }

    /// The instant `self` before `newest`, in `zone`'s calendar, exactly as restic computes
    /// `newest.AddDate(-years, -months, -days).Add(-hours)`: Go's `AddDate` moves the month
    /// first and lets the day run on past a short month's end (31 March minus a month is
    /// "31 February", that is 3 March), then moves the days.
    pub fn before(&self, newest: DateTime<Utc>, zone: Tz) -> DateTime<Utc> {
        self.try_before(newest, zone)
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    fn try_before(&self, newest: DateTime<Utc>, zone: Tz) -> Option<DateTime<Utc>> {
        let local = newest.with_timezone(&zone).naive_local();
        let months =
            i64::from(local.year()) * 12 + i64::from(local.month0()) - i64::from(self.months);
        let year = i32::try_from(months.div_euclid(12)).ok()?;
        let month = u32::try_from(months.rem_euclid(12)).ok()? + 1;
        let days_into = i64::from(local.day()) - 1 - i64::try_from(self.days).ok()?;
        let date = NaiveDate::from_ymd_opt(year, month, 1)?
            .checked_add_signed(chrono::Duration::try_days(days_into)?)?;
        let calendar = date.and_time(local.time());
        let at = match zone.from_local_datetime(&calendar) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t.with_timezone(&Utc),
            // In a spring-forward gap: the first instant after it.
            LocalResult::None => (1..=6 * 60)
                .find_map(|minute| {
                    zone.from_local_datetime(&(calendar + chrono::Duration::minutes(minute)))
                        .earliest()
                })?
                .with_timezone(&Utc),
        };
        at.checked_sub_signed(chrono::Duration::try_seconds(
            i64::try_from(self.seconds).ok()?,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::instant as at;
    use chrono_tz::{Europe::Berlin, UTC};

    #[test]
    fn reads_units_and_sums() {
        assert_eq!(parse("4h"), Ok(Duration::from_secs(4 * 3600)));
        assert_eq!(parse("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse("30min"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse(" 2w "), Ok(Duration::from_secs(14 * 86_400)));
        for bad in ["", "4", "h", "4x", "0m", "99999999999999999999d", "1y"] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn keep_within_units_follow_restic_and_m_is_refused_naming_both_readings() {
        assert_eq!(
            Span::parse("1y6mo").unwrap(),
            Span {
                months: 18,
                ..Span::default()
            }
        );
        assert_eq!(
            Span::parse("2w3d12h30min").unwrap(),
            Span {
                months: 0,
                days: 17,
                seconds: 12 * 3600 + 1800
            }
        );
        let refusal = Span::parse("6m").unwrap_err();
        assert!(
            refusal.contains("months") && refusal.contains("minutes") && refusal.contains("6mo"),
            "{refusal}"
        );
        assert!(Span::parse("3x").unwrap_err().contains("y, mo"));
        assert!(Span::parse("0d").is_err());
    }

    #[test]
    fn spans_count_back_on_the_calendar_as_restic_does() {
        let newest = at("2026-03-31T02:00:00Z");
        let month = Span::parse("1mo").unwrap();
        // "31 February 2026" is 3 March, as in Go (restic): the day runs on past the month.
        assert_eq!(month.before(newest, UTC), at("2026-03-03T02:00:00Z"));
        let month_and_days = Span::parse("1mo2d").unwrap();
        assert_eq!(
            month_and_days.before(newest, UTC),
            at("2026-03-01T02:00:00Z")
        );
        let fourteen = Span::parse("14mo").unwrap();
        assert_eq!(
            fourteen.before(at("2026-01-15T00:00:00Z"), UTC),
            at("2024-11-15T00:00:00Z")
        );
        let year = Span::parse("1y").unwrap();
        assert_eq!(year.before(newest, UTC), at("2025-03-31T02:00:00Z"));
        // A calendar day across the spring-forward change in Berlin is 23 hours long.
        let day = Span::parse("1d").unwrap();
        assert_eq!(
            day.before(at("2026-03-29T10:00:00Z"), Berlin),
            at("2026-03-28T11:00:00Z")
        );
        let hours = Span::parse("3h").unwrap();
        assert_eq!(hours.before(newest, UTC), at("2026-03-30T23:00:00Z"));
    }
}
