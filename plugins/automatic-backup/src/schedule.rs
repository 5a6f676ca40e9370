//! When runs are due: a cron expression or OrientDB's `first_time` plus `delay`, read as
//! wall-clock times in one time zone.
//!
//! Every schedule is a set of wall-clock times, and each of them runs once. A time that does
//! not exist (the spring-forward gap) runs at the first instant after the gap; a time that
//! happens twice (the fall-back overlap) runs at its first occurrence only. Due instants are
//! whole seconds, and the next one is always strictly after the instant asked about, whatever
//! that instant is (inside a repeated hour, or with a fraction of a second).

use chrono::{
    DateTime, Days, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, SubsecRound,
    TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};

/// A validated schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    when: When,
    zone: Tz,
    /// What the operator wrote, zone included: a persisted next run belongs to this text.
    key: String,
}

#[derive(Debug, Clone)]
enum When {
    Cron(Box<Cron>),
    /// OrientDB's schedule: the first run at `first`, then every delay.
    Every {
        first: NaiveTime,
        step: Step,
    },
}

#[derive(Debug, Clone)]
enum Step {
    /// A delay under a day that divides it: these times of day (sorted), every day.
    TimesOfDay(Vec<NaiveTime>),
    /// Whole days: `first` on every n-th day counted from the first run's day.
    Days(i64),
    /// Any other delay, in seconds: OrientDB's timer, every delay of elapsed time from the
    /// first run (its times of day move from day to day; a DST change does not move it).
    Elapsed(i64),
}

/// Names the field and its range when a number in it is out of range (the cron library says
/// only "Number out of bounds").
fn check_ranges(written: &str, fields: &[&str]) -> Result<(), String> {
    const FIVE: [(&str, u32, u32); 5] = [
        ("minute", 0, 59),
        ("hour", 0, 23),
        ("day of month", 1, 31),
        ("month", 1, 12),
        ("day of week", 0, 7),
    ];
    let named: Vec<(&str, u32, u32)> = if fields.len() == 6 {
        std::iter::once(("second", 0, 59)).chain(FIVE).collect()
    } else {
        FIVE.to_vec()
    };
    for (field, (name, low, high)) in fields.iter().zip(named) {
        for item in field.split(',') {
            // A step (`*/15`, `0-30/5`) is a count, not a value of the field.
            let values = item.split_once('/').map_or(item, |(values, _)| values);
            for n in values.split('-').filter_map(|v| v.parse::<u32>().ok()) {
                if n < low || n > high {
                    return Err(format!(
                        "{written:?}: {n} is out of range for the {name} field ({low}-{high})"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// How far a search looks ahead before it gives up (a cron for 30 February, say).
const SEARCH_LIMIT: usize = 10_000;

impl Schedule {
    /// A cron schedule: 5 fields (minute first) or 6 (second first), in `zone`.
    pub fn cron(written: &str, zone: Tz) -> Result<Schedule, String> {
        // The usual nicknames (cron's, Vixie's), as their 5-field forms.
        let expression = match written.trim() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other => other,
        };
        let fields: Vec<&str> = expression.split_whitespace().collect();
        if fields.len() != 5 && fields.len() != 6 {
            return Err(format!(
                "{written:?} has {} fields; write 5 (minute hour day month weekday), 6 (second first), or @hourly, @daily, @weekly, @monthly, @yearly",
                fields.len()
            ));
        }
        check_ranges(written, &fields)?;
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(expression)
            .map_err(|e| format!("{written:?} is not a cron expression: {e}"))?;
        let schedule = Schedule {
            when: When::Cron(Box::new(cron)),
            zone,
            key: format!("cron {expression} in {zone}"),
        };
        // Without a year field, a time that comes due at all does so within a leap cycle of
        // any instant: a fixed one keeps the answer the same whatever the date.
        if schedule.next_after(DateTime::UNIX_EPOCH, None).is_none() {
            return Err(format!("{expression:?} never comes due"));
        }
        Ok(schedule)
    }

    /// OrientDB's schedule: the first run at `first_time` ("HH:MM:SS"; tomorrow if it has
    /// passed today), then every `delay`, in `zone`. A delay that divides a day gives the
    /// same wall-clock times each day, and whole days the same time every n-th day; any other
    /// delay counts elapsed time from the first run, as OrientDB's timer does.
    pub fn every(
        first_time: &str,
        delay: std::time::Duration,
        zone: Tz,
    ) -> Result<Schedule, (&'static str, String)> {
        let first = NaiveTime::parse_from_str(first_time.trim(), "%H:%M:%S").map_err(|_| {
            (
                "first_time",
                format!(
                    "{first_time:?} is not a time of day; write \"HH:MM:SS\", e.g. \"02:30:00\""
                ),
            )
        })?;
        let seconds = delay.as_secs();
        let day = 86_400;
        if seconds == 0 {
            return Err((
                "delay",
                "is under a second; write at least \"1s\" (e.g. \"4h\", \"1d\")".to_owned(),
            ));
        }
        let step = if seconds.is_multiple_of(day) {
            Step::Days(i64::try_from(seconds / day).map_err(|_| ("delay", "is too long".into()))?)
        } else if seconds > day || !day.is_multiple_of(seconds) {
            Step::Elapsed(i64::try_from(seconds).map_err(|_| ("delay", "is too long".into()))?)
        } else {
            let start = u64::from(first.num_seconds_from_midnight()) % seconds;
            let mut times: Vec<NaiveTime> = (0..day / seconds)
                .filter_map(|k| {
                    let at = u32::try_from(start + k * seconds).ok()?;
                    NaiveTime::from_num_seconds_from_midnight_opt(at, 0)
                })
                .collect();
            times.sort();
            Step::TimesOfDay(times)
        };
        let key = format!("first_time {first} delay {seconds}s in {zone}");
        Ok(Schedule {
            when: When::Every { first, step },
            zone,
            key,
        })
    }

    /// The text a persisted next run is tied to.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The zone times are read in.
    pub fn zone(&self) -> Tz {
        self.zone
    }

    /// Instants shortly before each change of the zone's UTC offset in the `days` days from
    /// `from`: where a DST change can make two runs look alike.
    pub fn offset_changes(&self, from: DateTime<Utc>, days: u32) -> Vec<DateTime<Utc>> {
        let offset = |at: DateTime<Utc>| self.zone.offset_from_utc_datetime(&at.naive_utc()).fix();
        let day = chrono::Duration::days(1);
        (0..i64::from(days))
            .map(|d| from + day * d as i32)
            .filter(|start| offset(*start) != offset(*start + day))
            .map(|start| {
                // Narrowed to the minute, then an hour earlier.
                let (mut before, mut after) = (start, start + day);
                while after - before > chrono::Duration::minutes(1) {
                    let middle = before + (after - before) / 2;
                    if offset(middle) == offset(before) {
                        before = middle;
                    } else {
                        after = middle;
                    }
                }
                before - chrono::Duration::hours(1)
            })
            .collect()
    }

    /// The first run of a schedule armed at `now`: `first_time`'s next occurrence for
    /// OrientDB's schedule (never a time before it), the next cron time otherwise.
    pub fn first_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.when {
            When::Cron(_) => self.next_after(now, None),
            When::Every { first, .. } => self.days_from(now)?.find_map(|date| {
                self.resolve(date.and_time(*first))
                    .filter(|at| *at > now.trunc_subsecs(0))
            }),
        }
    }

    /// The first due instant strictly after `after`, a whole second, if any. `first_run` is
    /// when the schedule first ran (or is first due): OrientDB's schedule counts whole days
    /// from it and never runs before it; a cron schedule needs none.
    pub fn next_after(
        &self,
        after: DateTime<Utc>,
        first_run: Option<DateTime<Utc>>,
    ) -> Option<DateTime<Utc>> {
        // Whole seconds: due times never inherit the fraction of the instant they follow.
        let after = after.trunc_subsecs(0);
        let not_before = first_run.map_or(after, |first| first.max(after));
        match &self.when {
            When::Cron(cron) => {
                // The cron's times are wall-clock times: found on a clock without DST (UTC
                // standing for the zone's wall clock), then resolved by this module's rule,
                // whatever croner would do in a gap or an overlap.
                let mut wall =
                    Utc.from_utc_datetime(&after.with_timezone(&self.zone).naive_local());
                for _ in 0..SEARCH_LIMIT {
                    wall = cron.find_next_occurrence(&wall, false).ok()?;
                    // A wall-clock time already past (a repeated hour's, one in a gap that
                    // resolved to its end) is not due again.
                    match self.resolve(wall.naive_utc()) {
                        Some(at) if at > after => return Some(at),
                        _ => continue,
                    }
                }
                None
            }
            When::Every {
                step: Step::TimesOfDay(times),
                ..
            } => {
                // A day may hold tens of thousands of times ("2s"): each day's search starts
                // at the first one past `after`, found by bisection (a day's times resolve to
                // instants in the same order: an overlap takes its first, a gap its end).
                self.days_from(after)?
                    .flat_map(|date| {
                        let skip = times.partition_point(|t| {
                            self.resolve(date.and_time(*t)).is_none_or(|at| at <= after)
                        });
                        times[skip..].iter().map(move |t| date.and_time(*t))
                    })
                    .filter_map(|local| self.resolve(local))
                    .find(|at| *at > after && *at >= not_before)
            }
            When::Every {
                step: Step::Elapsed(every),
                ..
            } => {
                // Before the first run is known, it is the next first_time.
                let Some(first) = first_run.map(|f| f.trunc_subsecs(0)) else {
                    return self.first_after(after);
                };
                if first > after {
                    return Some(first);
                }
                let runs = (after - first).num_seconds() / every + 1;
                first.checked_add_signed(chrono::Duration::try_seconds(runs.checked_mul(*every)?)?)
            }
            When::Every {
                first,
                step: Step::Days(every),
            } => {
                let anchor = match first_run {
                    Some(first) => first.with_timezone(&self.zone).date_naive(),
                    None => NaiveDate::from_ymd_opt(1970, 1, 1)?,
                };
                self.days_from(after)?
                    .filter(|date| (*date - anchor).num_days().rem_euclid(*every) == 0)
                    .filter_map(|date| self.resolve(date.and_time(*first)))
                    .find(|at| *at > after && *at >= not_before)
            }
        }
    }

    /// Local dates from the day before `at`'s (a zone far from UTC) onwards, bounded.
    fn days_from(&self, at: DateTime<Utc>) -> Option<impl Iterator<Item = NaiveDate>> {
        let start = at
            .with_timezone(&self.zone)
            .date_naive()
            .checked_sub_days(Days::new(1))?;
        Some((0..SEARCH_LIMIT as u64).filter_map(move |d| start.checked_add_days(Days::new(d))))
    }

    /// The instant a wall-clock time runs at: the first of two in an overlap, the end of the
    /// gap for one that does not exist.
    fn resolve(&self, local: NaiveDateTime) -> Option<DateTime<Utc>> {
        match self.zone.from_local_datetime(&local) {
            LocalResult::Single(at) => Some(at.with_timezone(&Utc)),
            LocalResult::Ambiguous(first, _) => Some(first.with_timezone(&Utc)),
            LocalResult::None => {
                // Gaps are whole minutes and at most a few hours long.
                (1..=6 * 60).find_map(|minute| {
                    let later = local + chrono::Duration::minutes(minute);
                    let later = later.date().and_hms_opt(later.hour(), later.minute(), 0)?;
                    match self.zone.from_local_datetime(&later) {
                        LocalResult::Single(at) | LocalResult::Ambiguous(at, _) => {
                            Some(at.with_timezone(&Utc))
                        }
                        LocalResult::None => None,
                    }
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::instant as utc;
    use chrono_tz::{America::New_York, Europe::Berlin, UTC};
    use std::time::Duration;

    /// The first `n` due instants after `start`, as RFC 3339 in UTC.
    fn sequence(schedule: &Schedule, start: &str, n: usize) -> Vec<String> {
        let mut at = utc(start);
        (0..n)
            .map(|_| {
                at = schedule.next_after(at, None).unwrap();
                at.to_rfc3339()
            })
            .collect()
    }

    #[test]
    fn nicknames_and_out_of_range_fields() {
        let zone: Tz = "UTC".parse().unwrap();
        assert!(Schedule::cron("@daily", zone).is_ok());
        assert!(Schedule::cron("@hourly", zone).is_ok());
        let err = Schedule::cron("61 2 * * *", zone).unwrap_err();
        assert!(
            err.contains("61 is out of range for the minute field (0-59)"),
            "{err}"
        );
        let err = Schedule::cron("0 0 25 * * *", zone).unwrap_err();
        assert!(
            err.contains("25 is out of range for the hour field"),
            "{err}"
        );
        assert!(Schedule::cron("0 */2 * * *", zone).is_ok());
        assert!(Schedule::cron("0-30/5 1-3 * * 1-5", zone).is_ok());
        let err = Schedule::cron("@sometimes", zone).unwrap_err();
        assert!(err.contains("@daily"), "{err}");
    }

    #[test]
    fn cron_with_five_or_six_fields() {
        let every_15 = Schedule::cron("*/15 * * * *", UTC).unwrap();
        assert_eq!(
            sequence(&every_15, "2026-01-01T10:07:00Z", 3),
            [
                "2026-01-01T10:15:00+00:00",
                "2026-01-01T10:30:00+00:00",
                "2026-01-01T10:45:00+00:00"
            ]
        );
        let every_5s = Schedule::cron("*/5 * * * * *", UTC).unwrap();
        assert_eq!(
            sequence(&every_5s, "2026-01-01T10:00:03Z", 2),
            ["2026-01-01T10:00:05+00:00", "2026-01-01T10:00:10+00:00"]
        );
        for bad in ["* * * *", "* * * * * * *", "61 * * * *", "not cron at all"] {
            assert!(Schedule::cron(bad, UTC).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn cron_times_are_read_in_the_zone() {
        // 02:00 in Berlin is 01:00 UTC in winter and 00:00 UTC in summer.
        let nightly = Schedule::cron("0 2 * * *", Berlin).unwrap();
        assert_eq!(
            sequence(&nightly, "2026-01-10T12:00:00Z", 1),
            ["2026-01-11T01:00:00+00:00"]
        );
        assert_eq!(
            sequence(&nightly, "2026-07-10T12:00:00Z", 1),
            ["2026-07-11T00:00:00+00:00"]
        );
    }

    #[test]
    fn spring_forward_gap_runs_once_at_the_next_valid_time() {
        // Berlin, 29 March 2026: 02:00 CET jumps to 03:00 CEST (01:00 UTC).
        let nightly = Schedule::cron("30 2 * * *", Berlin).unwrap();
        assert_eq!(
            sequence(&nightly, "2026-03-28T12:00:00Z", 3),
            [
                "2026-03-29T01:00:00+00:00", // 03:00 CEST: the first instant after the gap
                "2026-03-30T00:30:00+00:00", // 02:30 CEST
                "2026-03-31T00:30:00+00:00"
            ]
        );
        // New York, 8 March 2026: 02:00 EST jumps to 03:00 EDT (07:00 UTC).
        let every = Schedule::every("02:30:00", Duration::from_secs(86_400), New_York).unwrap();
        assert_eq!(
            sequence(&every, "2026-03-07T12:00:00Z", 3),
            [
                "2026-03-08T07:00:00+00:00",
                "2026-03-09T06:30:00+00:00",
                "2026-03-10T06:30:00+00:00"
            ]
        );
        // Every 15 minutes: the four times inside the gap collapse into one run at 03:00.
        let quarterly = Schedule::cron("*/15 * * * *", Berlin).unwrap();
        assert_eq!(
            sequence(&quarterly, "2026-03-29T00:40:00Z", 3),
            [
                "2026-03-29T00:45:00+00:00", // 01:45 CET
                "2026-03-29T01:00:00+00:00", // 03:00 CEST
                "2026-03-29T01:15:00+00:00"
            ]
        );
    }

    #[test]
    fn a_cron_of_several_times_keeps_its_gap_and_overlap_times_too() {
        // Twice a day: croner alone drops 02:30 on the spring day; it runs at 03:00 here.
        let twice = Schedule::cron("30 2,14 * * *", Berlin).unwrap();
        assert_eq!(
            sequence(&twice, "2026-03-28T20:00:00Z", 3),
            [
                "2026-03-29T01:00:00+00:00", // 03:00 CEST
                "2026-03-29T12:30:00+00:00", // 14:30 CEST
                "2026-03-30T00:30:00+00:00"
            ]
        );
        assert_eq!(
            sequence(&twice, "2026-10-24T20:00:00Z", 3),
            [
                "2026-10-25T00:30:00+00:00", // 02:30 CEST, once
                "2026-10-25T13:30:00+00:00", // 14:30 CET
                "2026-10-26T01:30:00+00:00"
            ]
        );
    }

    #[test]
    fn fall_back_overlap_runs_once() {
        // Berlin, 25 October 2026: 02:00-03:00 happens twice (00:00-01:00 UTC in CEST, then
        // 01:00-02:00 UTC in CET).
        let nightly = Schedule::cron("30 2 * * *", Berlin).unwrap();
        assert_eq!(
            sequence(&nightly, "2026-10-24T12:00:00Z", 2),
            ["2026-10-25T00:30:00+00:00", "2026-10-26T01:30:00+00:00"]
        );
        // Hourly: 02:00 runs in its first occurrence only, 03:00 follows two hours later.
        let hourly = Schedule::cron("0 * * * *", Berlin).unwrap();
        assert_eq!(
            sequence(&hourly, "2026-10-24T23:30:00Z", 3),
            [
                "2026-10-25T00:00:00+00:00", // 02:00 CEST
                "2026-10-25T02:00:00+00:00", // 03:00 CET (02:00 CET is a repeat)
                "2026-10-25T03:00:00+00:00"
            ]
        );
        // New York, 1 November 2026: 01:00-02:00 happens twice.
        let every = Schedule::every("01:30:00", Duration::from_secs(86_400), New_York).unwrap();
        assert_eq!(
            sequence(&every, "2026-10-31T12:00:00Z", 2),
            ["2026-11-01T05:30:00+00:00", "2026-11-02T06:30:00+00:00"]
        );
    }

    #[test]
    fn dst_fall_back_storm_a_start_inside_the_repeated_hour_is_never_due_in_the_past() {
        // Berlin, 25 October 2026: 02:15 CET (the second 02:15) is 01:15 UTC. 02:30 ran at its
        // first occurrence (00:30 UTC); the next run is tomorrow's, never 00:30 UTC again.
        let nightly = Schedule::cron("30 2 * * *", Berlin).unwrap();
        for start in [
            "2026-10-25T01:15:00Z",
            "2026-10-25T01:15:00.250Z",
            "2026-10-25T01:29:59Z",
            "2026-10-25T00:45:00Z",
        ] {
            let at = utc(start);
            assert_eq!(
                nightly.next_after(at, None),
                Some(utc("2026-10-26T01:30:00Z")),
                "after {start}"
            );
        }
        // An interval inside the repeated hour: its wall-clock times already ran.
        let quarterly = Schedule::cron("*/15 * * * *", Berlin).unwrap();
        assert_eq!(
            sequence(&quarterly, "2026-10-25T01:10:00Z", 2),
            ["2026-10-25T02:00:00+00:00", "2026-10-25T02:15:00+00:00"]
        );
    }

    #[test]
    fn runs_one_second_late_due_times_are_whole_seconds_of_the_schedule() {
        let every_second = Schedule::cron("* * * * * *", UTC).unwrap();
        assert_eq!(
            every_second.next_after(utc("2026-05-01T10:00:05.300Z"), None),
            Some(utc("2026-05-01T10:00:06Z"))
        );
        let even = Schedule::cron("*/2 * * * * *", UTC).unwrap();
        assert_eq!(
            even.next_after(utc("2026-05-01T10:00:04.999Z"), None),
            Some(utc("2026-05-01T10:00:06Z"))
        );
        assert_eq!(
            even.next_after(utc("2026-05-01T10:00:05.001Z"), None),
            Some(utc("2026-05-01T10:00:06Z"))
        );
        let every = Schedule::every("00:00:00", Duration::from_secs(30), UTC).unwrap();
        assert_eq!(
            every.next_after(utc("2026-05-01T10:00:29.900Z"), None),
            Some(utc("2026-05-01T10:00:30Z"))
        );
    }

    #[test]
    fn first_time_and_delay_repeat_from_the_first_time() {
        let four_hourly = Schedule::every("02:00:00", Duration::from_secs(4 * 3600), UTC).unwrap();
        assert_eq!(
            sequence(&four_hourly, "2026-05-01T07:00:00Z", 4),
            [
                "2026-05-01T10:00:00+00:00",
                "2026-05-01T14:00:00+00:00",
                "2026-05-01T18:00:00+00:00",
                "2026-05-01T22:00:00+00:00"
            ]
        );
        // OrientDB's complaint: a first_time already passed today runs tomorrow, and a
        // restart does not move it.
        let daily = Schedule::every("01:00:00", Duration::from_secs(86_400), UTC).unwrap();
        assert_eq!(
            sequence(&daily, "2026-05-01T01:00:01Z", 1),
            ["2026-05-02T01:00:00+00:00"]
        );
        let weekly = Schedule::every("03:00:00", Duration::from_secs(7 * 86_400), UTC).unwrap();
        let runs = sequence(&weekly, "2026-05-01T00:00:00Z", 3);
        let days: Vec<i64> = runs
            .windows(2)
            .map(|w| (utc(&w[1]) - utc(&w[0])).num_days())
            .collect();
        assert_eq!(days, [7, 7]);
        assert!(matches!(
            Schedule::every("25:00:00", Duration::from_secs(3600), UTC),
            Err(("first_time", _))
        ));
        assert!(matches!(
            Schedule::every("01:00:00", Duration::from_millis(500), UTC),
            Err(("delay", _))
        ));
    }

    /// OrientDB's timer: a delay that neither divides a day nor is whole days (here 7 h and
    /// 36 h) runs at first_time, then every delay of elapsed time from that first run,
    /// across midnight and DST alike; a restart keeps the phase (the first run is stored).
    #[test]
    fn a_delay_that_does_not_divide_a_day_counts_from_the_first_run() {
        let seven = Schedule::every("01:00:00", Duration::from_secs(7 * 3600), Berlin).unwrap();
        // 01:00 CEST is 23:00 UTC the day before.
        let first = seven.first_after(utc("2026-10-23T12:00:00Z")).unwrap();
        assert_eq!(first, utc("2026-10-23T23:00:00Z"));
        let mut runs = vec![first];
        for _ in 0..5 {
            let last = *runs.last().unwrap();
            runs.push(seven.next_after(last, Some(first)).unwrap());
        }
        // The fall-back change on 25 October (01:00 UTC) does not move elapsed time.
        let gaps: Vec<i64> = runs.windows(2).map(|w| (w[1] - w[0]).num_hours()).collect();
        assert_eq!(gaps, [7, 7, 7, 7, 7]);
        // Asked from any instant (a restart mid-way), the next run keeps the phase.
        assert_eq!(
            seven.next_after(utc("2026-10-24T08:59:59.500Z"), Some(first)),
            Some(utc("2026-10-24T13:00:00Z"))
        );
        // Never before the first run, and without one, the next first_time.
        assert_eq!(
            seven.next_after(utc("2026-10-20T00:00:00Z"), Some(first)),
            Some(first)
        );
        assert_eq!(
            seven.next_after(utc("2026-10-23T12:00:00Z"), None),
            Some(first)
        );
        let thirty_six = Schedule::every("02:00:00", Duration::from_secs(36 * 3600), UTC).unwrap();
        let first = utc("2026-05-01T02:00:00Z");
        assert_eq!(
            thirty_six.next_after(first, Some(first)),
            Some(utc("2026-05-02T14:00:00Z"))
        );
    }
}
