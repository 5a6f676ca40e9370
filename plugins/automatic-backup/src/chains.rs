//! Retention over chains of archives (pgBackRest's rule: a backup others depend on is never
//! deleted alone). An increment restores only with every archive before it in its chain, so
//! the retention rules choose among restorable points (archives whose chain is whole), and
//! every archive that a kept one, or one retention cannot touch, depends on is kept with it.
//! An increment whose chain is broken restores nothing, counts for nothing, and is left alone.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::retention::Retention;

/// One archive retention may remove: where it is and what it builds on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its location (a path, or a destination's `NAME:key`).
    pub key: String,
    /// The key of the archive it applies to; `None` for a full archive.
    pub parent: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// What happens to a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Kept by these rules.
    Kept(Vec<&'static str>),
    /// Kept because the archive with this key needs it.
    ParentOf(String),
    /// Its chain lacks the archive with this key (or has it out of order): not restorable,
    /// left alone.
    Broken(String),
    /// Removed.
    Remove,
}

impl Fate {
    pub fn removes(&self) -> bool {
        *self == Fate::Remove
    }
}

/// The chain below each member: `Ok((links, full's index))` when whole, or the key of the
/// first link missing.
fn chains(members: &[Member]) -> Vec<Result<(usize, usize), String>> {
    let index: HashMap<&str, usize> = members
        .iter()
        .enumerate()
        .map(|(i, m)| (m.key.as_str(), i))
        .collect();
    let mut found: Vec<Option<Result<(usize, usize), String>>> = vec![None; members.len()];
    for start in 0..members.len() {
        // Down to a member already judged, a full one, or a missing parent; then back up.
        let mut path = Vec::new();
        let mut at = start;
        let bottom = loop {
            if let Some(judged) = &found[at] {
                break judged.clone();
            }
            path.push(at);
            let Some(parent) = &members[at].parent else {
                break Ok((0, at));
            };
            match index.get(parent.as_str()) {
                // A parent is older than its child: anything else is not a chain (and a
                // loop can never be walked forever).
                Some(&p) if members[p].created_at < members[at].created_at => at = p,
                _ => break Err(parent.clone()),
            }
        };
        let mut below = bottom;
        for &i in path.iter().rev() {
            below = below.map(|(links, full)| (links + 1, full));
            found[i] = Some(below.clone());
        }
    }
    found
        .into_iter()
        .map(|f| f.unwrap_or_else(|| Err(String::new())))
        .collect()
}

/// Decides the fate of each member (in input order). `needed` are the keys of parents that
/// archives outside `members` build on (ones retention cannot touch now): they stay, and so
/// does everything below them.
pub fn decide(
    members: &[Member],
    needed: &[(String, String)],
    retention: &Retention,
    zone: Tz,
) -> Vec<Fate> {
    let chains = chains(members);
    let restorable: Vec<usize> = (0..members.len()).filter(|&i| chains[i].is_ok()).collect();
    let created: Vec<DateTime<Utc>> = restorable.iter().map(|&i| members[i].created_at).collect();
    let mut fates = vec![Fate::Remove; members.len()];
    for (&i, reasons) in restorable.iter().zip(retention.plan(&created, zone)) {
        if !reasons.is_empty() {
            fates[i] = Fate::Kept(reasons);
        }
    }
    for (i, chain) in chains.iter().enumerate() {
        if let Err(missing) = chain {
            fates[i] = Fate::Broken(missing.clone());
        }
    }
    let index: HashMap<&str, usize> = members
        .iter()
        .enumerate()
        .map(|(i, m)| (m.key.as_str(), i))
        .collect();
    // Every member that stays holds up its parent, and that one its own.
    let mut holding: Vec<(String, &str)> = needed
        .iter()
        .map(|(child, parent)| (child.clone(), parent.as_str()))
        .collect();
    for (i, fate) in fates.iter().enumerate() {
        if let (false, Some(parent)) = (fate.removes(), &members[i].parent) {
            holding.push((members[i].key.clone(), parent));
        }
    }
    while let Some((child, parent)) = holding.pop() {
        let Some(&p) = index.get(parent) else {
            continue;
        };
        if fates[p].removes() {
            fates[p] = Fate::ParentOf(child);
            if let Some(grandparent) = &members[p].parent {
                holding.push((members[p].key.clone(), grandparent));
            }
        }
    }
    fates
}

/// The newest restorable member, with how many links its chain has and when its full archive
/// was taken: what the next increment builds on.
pub fn newest_restorable(members: &[Member]) -> Option<(usize, usize, DateTime<Utc>)> {
    let chains = chains(members);
    (0..members.len())
        .filter_map(|i| {
            let (links, full) = chains[i].as_ref().ok()?;
            Some((i, *links, members[*full].created_at))
        })
        .max_by_key(|(i, _, _)| members[*i].created_at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use chrono_tz::UTC;
    use proptest::prelude::*;

    fn at(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 5, day, 2, 0, 0).unwrap()
    }

    /// Members named by their day, each an increment on the day named, or full.
    fn days(chain: &[(u32, Option<u32>)]) -> Vec<Member> {
        chain
            .iter()
            .map(|(day, parent)| Member {
                key: format!("d{day}.zip"),
                parent: parent.map(|p| format!("d{p}.zip")),
                created_at: at(*day),
            })
            .collect()
    }

    fn keep_last(n: u32) -> Retention {
        Retention {
            keep_last: n,
            min_keep: 1,
            ..Retention::default()
        }
    }

    #[test]
    fn keeping_an_increment_keeps_its_whole_chain() {
        // full 1 ← 2 ← 3, full 4 ← 5: keep_last 3 keeps 5, 4 and 3, and 3 needs 2 and 1.
        let members = days(&[
            (1, None),
            (2, Some(1)),
            (3, Some(2)),
            (4, None),
            (5, Some(4)),
        ]);
        let fates = decide(&members, &[], &keep_last(3), UTC);
        assert_eq!(
            fates,
            [
                Fate::ParentOf("d2.zip".into()),
                Fate::ParentOf("d3.zip".into()),
                Fate::Kept(vec!["last"]),
                Fate::Kept(vec!["last"]),
                Fate::Kept(vec!["last"]),
            ]
        );
        // keep_last 2: the first chain goes whole.
        let fates = decide(&members, &[], &keep_last(2), UTC);
        assert_eq!(fates.iter().filter(|f| f.removes()).count(), 3);
    }

    #[test]
    fn a_broken_chain_counts_for_nothing_and_is_left_alone() {
        // 2's parent is gone: 2 and 3 restore nothing. min_keep 2 keeps the two restorable.
        let members = days(&[(2, Some(1)), (3, Some(2)), (4, None), (5, Some(4))]);
        let policy = Retention {
            keep_last: 1,
            min_keep: 2,
            ..Retention::default()
        };
        let fates = decide(&members, &[], &policy, UTC);
        assert_eq!(fates[0], Fate::Broken("d1.zip".into()));
        assert_eq!(fates[1], Fate::Broken("d1.zip".into()));
        assert_eq!(fates[2], Fate::Kept(vec!["min_keep"]));
        assert_eq!(fates[3], Fate::Kept(vec!["last"]));
    }

    #[test]
    fn an_archive_retention_cannot_touch_holds_up_its_parents() {
        let members = days(&[(1, None), (2, Some(1)), (4, None)]);
        let needed = [("d3.zip".to_owned(), "d2.zip".to_owned())];
        let fates = decide(&members, &needed, &keep_last(1), UTC);
        assert_eq!(fates[0], Fate::ParentOf("d2.zip".into()));
        assert_eq!(fates[1], Fate::ParentOf("d3.zip".into()));
    }

    #[test]
    fn a_parent_newer_than_its_child_is_no_chain() {
        // A loop of parents (crafted or corrupted) is broken, not walked forever.
        let members = days(&[(1, Some(2)), (2, Some(1))]);
        let fates = decide(&members, &[], &keep_last(5), UTC);
        assert!(fates.iter().all(|f| matches!(f, Fate::Broken(_))));
        assert_eq!(newest_restorable(&members), None);
    }

    #[test]
    fn the_next_increment_builds_on_the_newest_restorable_archive() {
        let members = days(&[(1, None), (2, Some(1)), (3, Some(2)), (4, Some(9))]);
        assert_eq!(newest_restorable(&members), Some((2, 3, at(1))));
    }

    /// Random ledgers: each day an archive that is full, or an increment on an earlier day
    /// (usually the day before), whose parent may since have been lost.
    fn ledgers() -> impl Strategy<Value = Vec<(u32, Option<u32>)>> {
        prop::collection::vec((any::<bool>(), 0u32..4, any::<u8>()), 1..28).prop_map(|days| {
            let mut chain = Vec::new();
            for (day, (full, back, lost)) in days.into_iter().enumerate() {
                let day = day as u32 + 1;
                let parent = (!full && day > 1).then(|| day.saturating_sub(back + 1).max(1));
                // One in sixteen parents is gone from the ledger.
                let parent = parent.map(|p| if lost % 16 == 0 { p + 100 } else { p });
                chain.push((day, parent));
            }
            chain
        })
    }

    fn policies() -> impl Strategy<Value = Retention> {
        (0u32..5, 0u32..4, 0u32..3, 1u32..6).prop_map(|(last, daily, weekly, min_keep)| Retention {
            keep_last: last,
            keep_daily: daily,
            keep_weekly: weekly,
            min_keep,
            ..Retention::default()
        })
    }

    proptest! {
        #[test]
        fn retention_never_orphans_an_increment(
            chain in ledgers(),
            policy in policies(),
            needed_day in prop::option::of(1u32..28),
        ) {
            let members = days(&chain);
            let needed: Vec<(String, String)> = needed_day
                .map(|d| ("outside.zip".to_owned(), format!("d{d}.zip")))
                .into_iter()
                .collect();
            let fates = decide(&members, &needed, &policy, UTC);
            let index: HashMap<&str, usize> =
                members.iter().enumerate().map(|(i, m)| (m.key.as_str(), i)).collect();
            let whole = chains(&members);
            // No archive that stays loses a parent that was there.
            for (i, member) in members.iter().enumerate() {
                if fates[i].removes() {
                    continue;
                }
                if let Some(&p) = member.parent.as_deref().and_then(|p| index.get(p)) {
                    prop_assert!(!fates[p].removes(), "{} stays but its parent goes", member.key);
                }
            }
            for (_, parent) in &needed {
                if let Some(&p) = index.get(parent.as_str()) {
                    prop_assert!(!fates[p].removes(), "{parent} is needed but goes");
                }
            }
            // Only restorable archives go; broken ones stay.
            for (i, fate) in fates.iter().enumerate() {
                prop_assert_eq!(matches!(fate, Fate::Broken(_)), whole[i].is_err());
            }
            // The rules see restorable points only: each one they keep is kept, and min_keep
            // of them stay (when there are that many).
            let restorable: Vec<usize> = (0..members.len()).filter(|&i| whole[i].is_ok()).collect();
            let created: Vec<_> = restorable.iter().map(|&i| members[i].created_at).collect();
            for (&i, reasons) in restorable.iter().zip(policy.plan(&created, UTC)) {
                if !reasons.is_empty() {
                    prop_assert_eq!(&fates[i], &Fate::Kept(reasons));
                }
            }
            let staying = restorable.iter().filter(|&&i| !fates[i].removes()).count();
            prop_assert!(staying >= restorable.len().min(policy.min_keep as usize));
            // Nothing is kept as a parent that no staying archive needs.
            for (i, fate) in fates.iter().enumerate() {
                if let Fate::ParentOf(child) = fate {
                    let needer = index.get(child.as_str()).map(|&c| &members[c]);
                    let from_outside = needed.iter().any(|(c, p)| c == child && *p == members[i].key);
                    let from_member = needer.is_some_and(|c| {
                        c.parent.as_deref() == Some(members[i].key.as_str())
                            && !fates[index[c.key.as_str()]].removes()
                    });
                    prop_assert!(from_outside || from_member);
                }
            }
        }
    }
}
