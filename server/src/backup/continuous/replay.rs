//! Restoring from a continuous archive: the newest base whose window holds the instant asked
//! for, then its stream replayed onto it. The stream is physical redo (page images), so
//! replaying frames the base already holds is harmless; what matters is to replay at least
//! through the base's `through` segment (past everything the base holds), then exactly the
//! transactions committed at or before the instant. Every segment is read and checked before
//! the first page is written.

use std::collections::BTreeSet;
use std::os::unix::fs::FileExt;
use std::path::Path;

use chrono::{DateTime, Utc};

use super::segment::Segment;
use super::store::{BaseMarker, IDLE_NOTE, Idle, MARKER_FORMAT, Store};
use crate::backup::BackupError;

/// `AS OF SYSTEM TIME '…'`: RFC 3339, or `2026-12-01 10:00:00[.fff][+00[:00]]` (UTC when no
/// offset is written).
pub fn parse_instant(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    use chrono::{DateTime, NaiveDateTime, Utc};
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"] {
        if let Ok(t) = DateTime::parse_from_str(text, format) {
            return Ok(t.with_timezone(&Utc));
        }
    }
    for format in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(t.and_utc());
        }
    }
    Err(format!(
        "AS OF SYSTEM TIME '{text}' is not a time; write it as '2026-12-01 10:00:00+00' (or RFC 3339; UTC when no offset is given)"
    ))
}

/// What a restore replays.
#[derive(Debug, Clone)]
pub struct Replay {
    pub marker: BaseMarker,
    /// The last segment replayed and how many of its frames (`None`: nothing to replay).
    cut: Option<(u64, usize)>,
    /// The commit time of the last transaction replayed (Unix microseconds).
    pub restored_to: Option<i64>,
    /// The largest the image grows to while it is replayed, in bytes.
    largest: u64,
}

/// The restorable window of a base: from the last transaction it must be replayed through
/// (or its own snapshot) to the newest instant the stream is complete at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: i64,
    pub end: i64,
}

fn micros(text: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_micros())
}

/// As an operator reads an instant.
pub fn instant_text(micros: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(micros).map_or_else(
        || micros.to_string(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    )
}

/// What a stream holds, from one listing: its base markers for a database (newest base
/// first), the numbers of its segments, and its idle note.
struct Contents {
    markers: Vec<BaseMarker>,
    present: BTreeSet<u64>,
    idle: Option<Idle>,
}

fn contents(store: &Store, database: &str) -> Result<Contents, BackupError> {
    let names = store.list()?;
    let mut markers = Vec::new();
    for name in names.iter().filter(|n| BaseMarker::is_marker_name(n)) {
        let bytes = store.get(name)?;
        let marker: BaseMarker =
            serde_json::from_slice(&bytes).map_err(|e| BackupError::BadSegment {
                path: store.display(name).into(),
                reason: format!("not a base marker ({e})"),
            })?;
        if marker.format == MARKER_FORMAT && marker.database == database {
            markers.push(marker);
        }
    }
    markers.sort_by(|a, b| b.base_created_at.cmp(&a.base_created_at));
    let idle = match names.iter().any(|n| n == IDLE_NOTE) {
        true => serde_json::from_slice(&store.get(IDLE_NOTE)?).ok(),
        false => None,
    };
    Ok(Contents {
        markers,
        present: names
            .iter()
            .filter_map(|n| Segment::sequence_of(n))
            .collect(),
        idle,
    })
}

/// A base's window once its stream has been followed to `reach` (the first segment it
/// lacks): refused if that is not past `through`, and complete until the idle note's
/// instant when nothing was shipped after it.
fn close_window(
    marker: &BaseMarker,
    reach: u64,
    idle: Option<Idle>,
    mut window: Window,
) -> Result<Window, String> {
    if reach <= marker.through {
        return Err(format!(
            "segment {} after its base {} is missing, so the base cannot be made consistent",
            Segment::name(reach),
            marker.base
        ));
    }
    if let Some(idle) = idle
        && idle.through + 1 == reach
    {
        window.end = window.end.max(idle.complete_at);
    }
    window.end = window.end.max(window.start);
    Ok(window)
}

fn segment(store: &Store, sequence: u64) -> Result<Segment, BackupError> {
    let name = Segment::name(sequence);
    let bytes = store.get(&name)?;
    let segment = Segment::decode(&bytes).map_err(|reason| BackupError::BadSegment {
        path: store.display(&name).into(),
        reason,
    })?;
    if segment.sequence != sequence {
        return Err(BackupError::BadSegment {
            path: store.display(&name).into(),
            reason: format!("it says it is segment {}", segment.sequence),
        });
    }
    Ok(segment)
}

/// What restoring to `as_of` (or to the newest point, for `None`) replays: the newest base
/// that `exists` and whose window holds the instant. `None` when the stream has no base, or
/// none from before the instant.
pub fn plan(
    store: &Store,
    database: &str,
    as_of: Option<DateTime<Utc>>,
    exists: impl Fn(&str) -> bool,
) -> Result<Option<(Replay, Window)>, BackupError> {
    let Contents {
        markers,
        present,
        idle,
    } = contents(store, database)?;
    if markers.is_empty() {
        return Ok(None);
    }
    let target = as_of.map(|t| t.timestamp_micros());
    // An instant before every base is not the stream's: archives from before it (a plain
    // BACKUP … INTO there) may serve it.
    if let Some(t) = target
        && markers
            .iter()
            .all(|m| micros(&m.base_created_at).is_none_or(|at| at > t))
    {
        return Ok(None);
    }
    let mut refusals = Vec::new();
    for marker in markers {
        let Some(base_at) = micros(&marker.base_created_at) else {
            continue;
        };
        if target.is_some_and(|t| base_at > t) {
            continue;
        }
        if !exists(&marker.base) {
            refusals.push(format!("its base {} is gone", marker.base));
            continue;
        }
        match replay_onto(store, &present, marker, base_at, target, idle)? {
            Ok(found) => return Ok(Some(found)),
            Err(why) => refusals.push(why),
        }
    }
    let asked = target.map_or("the newest point".to_owned(), instant_text);
    Err(BackupError::OutsideWindow(format!(
        "the continuous archive of \"{database}\" in {} cannot restore {asked}: {}",
        store.display(""),
        refusals.join("; ")
    )))
}

/// A base and what it can restore: its window, or why it has none.
pub type BaseWindow = (BaseMarker, Result<Window, String>);

/// What a stream can restore, for listings: each base's window, newest base first, or why
/// it has none (its base is gone, a segment it needs is missing). `exists` says whether a
/// base archive (a file name beside the stream) is there.
pub fn windows(
    store: &Store,
    database: &str,
    exists: impl Fn(&str) -> bool,
) -> Result<Vec<BaseWindow>, BackupError> {
    let Contents {
        markers,
        present,
        idle,
    } = contents(store, database)?;
    // One pass over the stream serves every base: each segment is read once, and each base
    // follows it from its own first segment until its first hole.
    struct Follow {
        marker: BaseMarker,
        window: Result<Window, String>,
        /// The next segment its unbroken stream needs.
        reach: u64,
        open: bool,
    }
    let mut bases: Vec<Follow> = Vec::new();
    for marker in markers {
        let Some(base_at) = micros(&marker.base_created_at) else {
            continue;
        };
        let window = if exists(&marker.base) {
            Ok(Window {
                start: base_at,
                end: base_at,
            })
        } else {
            Err(format!(
                "its base {} is gone or unreadable (SHOW ARCHIVES names its problem)",
                marker.base
            ))
        };
        bases.push(Follow {
            reach: marker.replay_from,
            open: window.is_ok(),
            marker,
            window,
        });
    }
    let first = bases
        .iter()
        .filter(|b| b.open)
        .map(|b| b.reach)
        .min()
        .unwrap_or(u64::MAX);
    for &sequence in present.range(first..) {
        if !bases.iter().any(|b| b.open && b.reach == sequence) {
            // A hole before it closes every base still waiting for an earlier one.
            for base in bases.iter_mut().filter(|b| b.open && b.reach < sequence) {
                base.open = false;
            }
            if !bases.iter().any(|b| b.open) {
                break;
            }
            continue;
        }
        let segment = segment(store, sequence);
        for base in bases.iter_mut().filter(|b| b.open) {
            if base.reach < sequence {
                base.open = false;
                continue;
            }
            if base.reach > sequence {
                continue;
            }
            let (Ok(segment), Ok(window)) = (&segment, &mut base.window) else {
                // Unreadable: this base's stream ends before it.
                base.open = false;
                if let (Err(e), true) = (&segment, sequence <= base.marker.through) {
                    base.window = Err(e.to_string());
                }
                continue;
            };
            if sequence <= base.marker.through
                && let Some(&at) = segment.commit_times.last()
            {
                window.start = window.start.max(at);
            }
            if segment.complete {
                window.end = window.end.max(segment.shipped_at);
            }
            base.reach += 1;
        }
    }
    let found = bases
        .into_iter()
        .map(|base| {
            let Follow {
                marker,
                window,
                reach,
                ..
            } = base;
            let window = window.and_then(|window| close_window(&marker, reach, idle, window));
            (marker, window)
        })
        .collect();
    Ok(found)
}

/// Reads the stream after `marker`'s base (checking every segment) and decides the cut; an
/// `Err` inside says why this base cannot serve the instant.
fn replay_onto(
    store: &Store,
    present: &BTreeSet<u64>,
    marker: BaseMarker,
    base_at: i64,
    target: Option<i64>,
    idle: Option<Idle>,
) -> Result<Result<(Replay, Window), String>, BackupError> {
    let mut window = Window {
        start: base_at,
        end: base_at,
    };
    let mut cut = None;
    let mut restored_to = None;
    let (mut high, mut largest) = (0u64, 0u64);
    let mut sequence = marker.replay_from;
    let mut reached_target = false;
    while present.contains(&sequence) {
        let segment = segment(store, sequence)?;
        let mandatory = sequence <= marker.through;
        let mut commits = segment.commit_times.iter();
        let page_size = u64::from(segment.page_size);
        for (i, frame) in segment.frames.iter().enumerate() {
            high = high
                .max(u64::from(frame.page) * page_size)
                .max(u64::from(frame.commit_pages) * page_size);
            if frame.commit_pages == 0 {
                continue;
            }
            let Some(&at) = commits.next() else { break };
            if mandatory {
                window.start = window.start.max(at);
            } else if reached_target || target.is_some_and(|t| at > t) {
                reached_target = true;
                continue;
            }
            cut = Some((sequence, i + 1));
            restored_to = Some(at);
            largest = high;
        }
        if segment.complete {
            window.end = window.end.max(segment.shipped_at);
        }
        sequence += 1;
    }
    let window = match close_window(&marker, sequence, idle, window) {
        Ok(window) => window,
        Err(why) => return Ok(Err(why)),
    };
    if let Some(t) = target {
        if t < window.start {
            return Ok(Err(format!(
                "the window of base {} starts at {}",
                marker.base,
                instant_text(window.start)
            )));
        }
        if t > window.end && !reached_target {
            return Ok(Err(format!(
                "the newest instant archived is {} (segment {} is the last of an unbroken stream after base {}); RESTORE without AS OF SYSTEM TIME restores the newest point",
                instant_text(window.end),
                Segment::name(sequence.saturating_sub(1)),
                marker.base
            )));
        }
    }
    Ok(Ok((
        Replay {
            marker,
            cut,
            restored_to,
            largest,
        },
        window,
    )))
}

/// Replays `replay` onto the database image at `image` (the base, rebuilt, with pages of
/// `page_size` bytes).
pub fn apply(
    store: &Store,
    replay: &Replay,
    image: &Path,
    page_size: u64,
) -> Result<(), BackupError> {
    let Some((last, frames_in_last)) = replay.cut else {
        return Ok(());
    };
    let io = |action, source| BackupError::Io {
        action,
        path: image.to_owned(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(image)
        .map_err(|e| io("opening", e))?;
    // Before a page is written, as a restore from an archive checks.
    let now = file.metadata().map_err(|e| io("reading", e))?.len();
    crate::backup::archive_reader::ensure_room(
        "the replayed database",
        image,
        replay.largest.saturating_sub(now),
    )?;
    let mut pages = None;
    for sequence in replay.marker.replay_from..=last {
        let segment = segment(store, sequence)?;
        if u64::from(segment.page_size) != page_size {
            return Err(BackupError::BadSegment {
                path: store.display(&Segment::name(sequence)).into(),
                reason: format!(
                    "its pages are {} bytes, its base's {page_size}: take a new base",
                    segment.page_size
                ),
            });
        }
        let take = if sequence == last {
            frames_in_last
        } else {
            segment.frames.len()
        };
        for frame in segment.frames.iter().take(take) {
            file.write_all_at(&frame.data, (u64::from(frame.page) - 1) * page_size)
                .map_err(|e| io("writing", e))?;
            if frame.commit_pages != 0 {
                pages = Some((u64::from(frame.commit_pages), page_size));
            }
        }
    }
    if let Some((pages, page_size)) = pages {
        file.set_len(pages * page_size)
            .map_err(|e| io("truncating", e))?;
    }
    // A page 1 from the log says "WAL mode" (bytes 18 and 19); the image is a file without
    // a log, as the base was, until it is installed.
    file.write_all_at(&[1, 1], 18)
        .map_err(|e| io("writing", e))?;
    file.sync_all().map_err(|e| io("syncing", e))
}

/// Makes in `path` the database `plan` restores: its base (`base`, rebuilt from its chain
/// when it is an increment) with the stream's segments replayed onto it, checked by
/// `PRAGMA integrity_check`. What the restore reports is the base's manifest, dated at the
/// last transaction replayed.
pub fn rebuild_to<'a>(
    store: &Store,
    plan: &Replay,
    base: &str,
    open: crate::backup::chain::Opener<'_, 'a>,
    path: &Path,
    progress: &crate::backup::progress::Progress,
) -> Result<crate::backup::archive_reader::Verified, BackupError> {
    use crate::backup::{chain, manifest};
    let archive = open(base)?;
    let mut verified = if archive.manifest.kind == manifest::INCREMENTAL {
        chain::rebuild(archive, base, open, path, progress, chain::Proof::Newest)?
    } else {
        let mut archive = archive;
        archive.extract_database(path, progress)?
    };
    apply(store, plan, path, verified.manifest.page_size)?;
    crate::backup::archive_reader::sqlite_integrity(path).map_err(|reason| {
        BackupError::BadSegment {
            path: store.display("").into(),
            reason: format!("replayed onto {base}, the database fails its check: {reason}"),
        }
    })?;
    verified.database_bytes = std::fs::metadata(path).map_or(0, |m| m.len());
    if let Some(at) = plan.restored_to {
        verified.manifest.created_at = instant_text(at);
    }
    Ok(verified)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::continuous::wal::Frame;

    fn put_segment(store: &Store, sequence: u64, commit: i64, complete: bool) {
        let segment = Segment {
            sequence,
            page_size: 512,
            generation: 1,
            first_frame: 1,
            shipped_at: commit + 10,
            complete,
            frames: vec![Frame {
                page: 1,
                commit_pages: 1,
                data: vec![0; 512],
            }],
            commit_times: vec![commit],
        };
        store
            .put(&Segment::name(sequence), segment.encode().unwrap())
            .unwrap();
    }

    fn put_marker(store: &Store, base: &str, at: &str, replay_from: u64, through: u64) {
        let marker = BaseMarker {
            format: MARKER_FORMAT.into(),
            version: 1,
            database: "d".into(),
            base: base.into(),
            base_created_at: at.into(),
            replay_from,
            through,
        };
        store
            .put(
                &BaseMarker::name_for(base),
                serde_json::to_vec(&marker).unwrap(),
            )
            .unwrap();
    }

    /// One pass serves every base: each follows the stream from its own first segment to
    /// its first hole, and one whose segments it must replay are missing has no window.
    #[test]
    fn each_base_has_the_window_of_its_own_unbroken_stream() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::Dir(dir.path().to_owned());
        let second = |s: i64| 1_790_000_000_000_000 + s * 1_000_000;
        // Segments 1, 2, then a gap (3 missing), then 4, 5.
        for (sequence, at) in [(1, 1), (2, 2), (4, 4), (5, 5)] {
            put_segment(&store, sequence, second(at), true);
        }
        let instant = |s: i64| instant_text(second(s));
        put_marker(&store, "old.zip", &instant(0), 1, 1);
        put_marker(&store, "new.zip", &instant(3), 4, 4);
        put_marker(&store, "broken.zip", &instant(2), 3, 3);
        put_marker(&store, "gone.zip", &instant(1), 2, 2);
        let windows = windows(&store, "d", |base| base != "gone.zip").unwrap();
        let of = |base: &str| {
            windows
                .iter()
                .find(|(m, _)| m.base == base)
                .map(|(_, w)| w.clone())
                .unwrap()
        };
        // Made consistent by segment 1; complete until segment 2 was shipped.
        assert_eq!(
            of("old.zip"),
            Ok(Window {
                start: second(1),
                end: second(2) + 10
            })
        );
        assert_eq!(
            of("new.zip"),
            Ok(Window {
                start: second(4),
                end: second(5) + 10
            })
        );
        assert!(of("broken.zip").unwrap_err().contains("is missing"));
        assert!(of("gone.zip").unwrap_err().contains("is gone"));
    }
}
