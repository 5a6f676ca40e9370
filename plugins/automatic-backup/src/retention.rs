//! Which archives to keep, with restic's `forget` semantics: the rules are OR-ed; `keep_last`
//! keeps the newest n; `keep_hourly` … `keep_yearly` keep the newest archive in each of the
//! newest n calendar buckets (in the schedule's zone) that hold one; `keep_within` keeps every
//! archive strictly newer than the newest one minus the span (on the calendar, as restic
//! counts it). `min_keep` is a floor no rule set goes under.

use chrono::{DateTime, Datelike, Timelike, Utc};
use chrono_tz::Tz;

use crate::duration::Span;

/// A calendar bucket: (year, ordinal/week/month, hour, 0) as the rule needs.
type Bucket = (i32, u32, u32, u32);
type BucketOf = fn(&DateTime<Tz>) -> Bucket;

/// A validated retention policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retention {
    pub keep_last: u32,
    pub keep_hourly: u32,
    pub keep_daily: u32,
    pub keep_weekly: u32,
    pub keep_monthly: u32,
    pub keep_yearly: u32,
    pub keep_within: Option<Span>,
    pub min_keep: u32,
}

impl Retention {
    /// Whether any rule keeps something (an empty policy would keep only `min_keep`).
    pub fn has_rules(&self) -> bool {
        self.keep_last > 0
            || self.keep_hourly > 0
            || self.keep_daily > 0
            || self.keep_weekly > 0
            || self.keep_monthly > 0
            || self.keep_yearly > 0
            || self.keep_within.is_some()
    }

    /// Why each archive (by its creation time) is kept: one entry per input, in input order;
    /// an empty list means it may go.
    pub fn plan(&self, created: &[DateTime<Utc>], zone: Tz) -> Vec<Vec<&'static str>> {
        let mut reasons = vec![Vec::new(); created.len()];
        let mut newest_first: Vec<usize> = (0..created.len()).collect();
        newest_first.sort_by(|a, b| created[*b].cmp(&created[*a]));

        for &i in newest_first.iter().take(self.keep_last as usize) {
            reasons[i].push("last");
        }
        let buckets: [(u32, &'static str, BucketOf); 5] = [
            (self.keep_hourly, "hourly", |t| {
                (t.year(), t.ordinal(), t.hour(), 0)
            }),
            (self.keep_daily, "daily", |t| (t.year(), t.ordinal(), 0, 0)),
            (self.keep_weekly, "weekly", |t| {
                let week = t.iso_week();
                (week.year(), week.week(), 0, 0)
            }),
            (self.keep_monthly, "monthly", |t| {
                (t.year(), t.month(), 0, 0)
            }),
            (self.keep_yearly, "yearly", |t| (t.year(), 0, 0, 0)),
        ];
        for (count, reason, bucket_of) in buckets {
            let mut kept = 0;
            let mut last_bucket = None;
            for &i in &newest_first {
                if kept >= count {
                    break;
                }
                let bucket = bucket_of(&created[i].with_timezone(&zone));
                if last_bucket != Some(bucket) {
                    reasons[i].push(reason);
                    kept += 1;
                    last_bucket = Some(bucket);
                }
            }
        }
        if let (Some(within), Some(&newest)) = (self.keep_within, newest_first.first()) {
            let since = within.before(created[newest], zone);
            for &i in &newest_first {
                if created[i] > since {
                    reasons[i].push("within");
                }
            }
        }
        let mut kept = reasons.iter().filter(|r| !r.is_empty()).count();
        for &i in &newest_first {
            if kept >= self.min_keep as usize {
                break;
            }
            if reasons[i].is_empty() {
                reasons[i].push("min_keep");
                kept += 1;
            }
        }
        reasons
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, TimeZone};
    use chrono_tz::UTC;

    /// One archive a day at 02:00 UTC through 2026.
    fn a_year_of_dailies() -> Vec<DateTime<Utc>> {
        let first = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        first
            .iter_days()
            .take_while(|d| d.year() == 2026)
            .map(|d| Utc.from_utc_datetime(&d.and_hms_opt(2, 0, 0).unwrap()))
            .collect()
    }

    fn kept_days(created: &[DateTime<Utc>], policy: &Retention) -> Vec<String> {
        let plan = policy.plan(created, UTC);
        let mut days: Vec<String> = created
            .iter()
            .zip(&plan)
            .filter(|(_, reasons)| !reasons.is_empty())
            .map(|(t, _)| t.format("%m-%d").to_string())
            .collect();
        days.sort();
        days
    }

    #[test]
    fn a_year_of_daily_backups_keeps_exactly_restics_set() {
        let created = a_year_of_dailies();
        assert_eq!(created.len(), 365);
        let policy = Retention {
            keep_daily: 7,
            keep_weekly: 4,
            keep_monthly: 12,
            min_keep: 1,
            ..Retention::default()
        };
        assert_eq!(
            kept_days(&created, &policy),
            [
                "01-31", "02-28", "03-31", "04-30", "05-31", "06-30", "07-31", "08-31", "09-30",
                "10-31", "11-30", // monthly
                "12-13", "12-20", // weekly (Sundays end ISO weeks; 12-27 is daily too)
                "12-25", "12-26", "12-27", "12-28", "12-29", "12-30", "12-31", // daily
            ]
        );
        let yearly_and_last = Retention {
            keep_last: 3,
            keep_yearly: 5,
            min_keep: 1,
            ..Retention::default()
        };
        assert_eq!(
            kept_days(&created, &yearly_and_last),
            ["12-29", "12-30", "12-31"]
        );
    }

    #[test]
    fn buckets_count_only_when_they_hold_a_backup() {
        // Archives on 1, 2 and 20 January and 3 March: keep_daily 3 reaches back to 2 January
        // although the last three calendar days hold nothing.
        let created: Vec<DateTime<Utc>> = [(1, 1), (1, 2), (1, 20), (3, 3)]
            .iter()
            .map(|(m, d)| Utc.with_ymd_and_hms(2026, *m, *d, 12, 0, 0).unwrap())
            .collect();
        let policy = Retention {
            keep_daily: 3,
            ..Retention::default()
        };
        assert_eq!(kept_days(&created, &policy), ["01-02", "01-20", "03-03"]);
        // Two in one hour: keep_hourly keeps the newer.
        let created = vec![
            Utc.with_ymd_and_hms(2026, 5, 1, 10, 5, 0).unwrap(),
            Utc.with_ymd_and_hms(2026, 5, 1, 10, 55, 0).unwrap(),
            Utc.with_ymd_and_hms(2026, 5, 1, 9, 30, 0).unwrap(),
        ];
        let policy = Retention {
            keep_hourly: 1,
            ..Retention::default()
        };
        let plan = policy.plan(&created, UTC);
        assert_eq!(plan, [vec![], vec!["hourly"], vec![]]);
    }

    #[test]
    fn keep_within_boundary_keeps_only_strictly_newer_as_restic_does() {
        let created = a_year_of_dailies();
        let policy = Retention {
            keep_within: Some(Span::parse("3d").unwrap()),
            ..Retention::default()
        };
        // restic keeps snapshots strictly newer than newest − within: 28 December 02:00 is
        // exactly three days before 31 December 02:00, so it goes.
        assert_eq!(kept_days(&created, &policy), ["12-29", "12-30", "12-31"]);
    }

    #[test]
    fn min_keep_is_never_crossed() {
        let created = a_year_of_dailies();
        let policy = Retention {
            keep_last: 1,
            min_keep: 5,
            ..Retention::default()
        };
        let plan = policy.plan(&created, UTC);
        assert_eq!(plan.iter().filter(|r| !r.is_empty()).count(), 5);
        assert_eq!(plan[364], ["last"]);
        assert_eq!(plan[360], ["min_keep"]);
        assert!(plan[359].is_empty());
        // Fewer archives than min_keep: all stay.
        let few = &created[..2];
        assert!(policy.plan(few, UTC).iter().all(|r| !r.is_empty()));
        assert!(Retention::default().plan(&[], UTC).is_empty());
    }
}
