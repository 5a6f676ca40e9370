//! Free space on the disks the server writes to, and the data disk's reserve.
//!
//! A database on a full disk must still let the admin in to fix it: log in, list and drop
//! databases, back them up to another disk; and the server must still start. SQLite needs a
//! little room for all of these (a `-shm` file to read a WAL database, a page of the backup
//! history). So, as CockroachDB does with its ballast, the server keeps `reserved_space`
//! allocated in a file of the data directory, `reserved-space` (at most a quarter of the
//! disk), and releases it when the disk fills; until the disk has room again, only the
//! admin's statements may write, so the room stays the admin's. The reserve is made again once there is space for it and more. It must
//! be larger than a WAL checkpoint can grow a database file (SQLite's automatic checkpoint
//! runs at about 4 MiB of log), or the first checkpoint after the release eats it.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The reserve's file in the data directory.
pub const RESERVE_FILE: &str = "reserved-space";
/// The default `[server] reserved_space`.
pub const DEFAULT_RESERVE: u64 = 64 << 20;

/// Bytes an unprivileged writer may still allocate on the file system holding `path`.
pub fn available(path: &Path) -> std::io::Result<u64> {
    Ok(space(path)?.0)
}

/// (free for an unprivileged writer, total size) of the file system holding `path`.
fn space(path: &Path) -> std::io::Result<(u64, u64)> {
    let stats = rustix::fs::statvfs(path)?;
    Ok((
        stats.f_bavail.saturating_mul(stats.f_frsize),
        stats.f_blocks.saturating_mul(stats.f_frsize),
    ))
}

/// The data disk: whether it is full, and the reserve kept for that moment.
#[derive(Debug)]
pub struct DataDisk {
    dir: PathBuf,
    reserve: PathBuf,
    /// `reserved_space`: the most the reserve holds.
    reserved: u64,
    /// Whether this is the server's own view, which makes and releases the reserve (the
    /// CLI's only looks).
    manages_reserve: bool,
    /// What it holds on this disk (at most a quarter of it, so a small disk is never
    /// counted full for good); known at the first check.
    reserve_size: AtomicU64,
    full: AtomicBool,
    /// One check at a time: two would both release, or both make, the reserve.
    checking: Mutex<()>,
}

impl DataDisk {
    /// The disk holding `data_dir`, keeping up to `reserved` bytes for the admin (0: none).
    pub fn new(data_dir: &Path, reserved: u64) -> DataDisk {
        DataDisk {
            dir: data_dir.to_owned(),
            reserve: data_dir.join(RESERVE_FILE),
            reserved,
            manages_reserve: true,
            reserve_size: AtomicU64::new(reserved),
            full: AtomicBool::new(false),
            checking: Mutex::new(()),
        }
    }

    /// The disk holding `data_dir` as the CLI sees it: it never makes, releases or removes the
    /// server's reserve, whatever it finds.
    pub fn observing(data_dir: &Path) -> DataDisk {
        DataDisk {
            manages_reserve: false,
            ..DataDisk::new(data_dir, 0)
        }
    }

    /// Below this much free space the disk counts as full.
    fn full_below(reserve: u64) -> u64 {
        (reserve / 16).max(1 << 20)
    }

    /// The free space at which the disk counts as having room again: the reserve can be
    /// made and still leave twice the full mark free.
    fn room_above(reserve: u64) -> u64 {
        reserve + 2 * DataDisk::full_below(reserve)
    }

    /// Whether writes by others than the admin are refused for lack of space.
    pub fn is_full(&self) -> bool {
        self.full.load(Ordering::Acquire)
    }

    /// Looks at the free space now (at start-up, every second, and whenever a write failed
    /// for lack of space): makes the reserve when there is room for it and more, releases it
    /// when the disk is full. The disk counts as full while the reserve is missing, so a
    /// restart does not hand the admin's room to everyone. Returns the free space.
    pub fn check(&self) -> std::io::Result<u64> {
        let _one_at_a_time = self.checking.lock().unwrap_or_else(|p| p.into_inner());
        let (mut free, total) = space(&self.dir)?;
        let reserve = self.reserved.min(total / 4);
        self.reserve_size.store(reserve, Ordering::Release);
        let (full_below, room_above) =
            (DataDisk::full_below(reserve), DataDisk::room_above(reserve));
        if reserve == 0 && self.manages_reserve && self.reserve.is_file() {
            // The reserve was turned off: its room goes back to everyone.
            let _ = std::fs::remove_file(&self.reserve);
            free = available(&self.dir)?;
        }
        let mut present = reserve > 0 && self.reserve.is_file();
        if reserve > 0 && !present && free >= room_above {
            self.make_reserve(reserve)?;
            present = true;
            free = available(&self.dir)?;
        }
        let mut released = false;
        if present && free < full_below {
            released = std::fs::remove_file(&self.reserve).is_ok();
            present = !released;
            free = available(&self.dir).unwrap_or(free);
        }
        // Full below the mark, and until there is room above it again (no flapping).
        let was_full = self.is_full();
        let short = if was_full { room_above } else { full_below };
        let full = free < short || (reserve > 0 && !present);
        self.full.store(full, Ordering::Release);
        if released {
            tracing::error!(path = %self.dir.display(), free = %describe(free), reserve = %describe(reserve), writes_resume_at = %describe(room_above), "the data disk is full: released the reserve for the admin; statements that write are refused for all other users until space is freed (the admin can drop databases, or back them up to another disk and drop them; or grow the disk)");
        } else if full && !was_full {
            tracing::error!(path = %self.dir.display(), free = %describe(free), reserve = %describe(reserve), writes_resume_at = %describe(room_above), "the data disk has too little room to keep its reserve and some to spare; statements that write are refused for all but the admin until space is freed");
        } else if !full && was_full {
            tracing::info!(path = %self.dir.display(), free = %describe(free), "the data disk has room again; every user may write");
        }
        Ok(free)
    }

    /// Whether even the admin's writes must stop: the disk is full and what is left is what
    /// logging in, `DROP DATABASE` and a backup to another disk need, once checkpoints have
    /// moved the `pending` bytes of write-ahead logs into their databases.
    pub fn at_floor(&self, pending: u64) -> bool {
        let floor = DataDisk::full_below(self.reserve_size.load(Ordering::Acquire));
        self.is_full()
            && available(&self.dir).is_ok_and(|free| free < floor.saturating_add(pending))
    }

    /// What an admin's write refused at the floor is told.
    pub fn floor_refusal(&self) -> String {
        let free = available(&self.dir).map_or_else(|_| "unknown".into(), describe);
        format!(
            "the data disk is full ({free} free in {}): what is left is kept so that the admin can still log in, drop databases and back them up to another disk, so even the admin's statements that write are refused now",
            self.dir.display()
        )
    }

    /// What a refused write is told.
    pub fn refusal(&self) -> String {
        let free = available(&self.dir).map_or_else(|_| "unknown".into(), describe);
        let resume = DataDisk::room_above(self.reserve_size.load(Ordering::Acquire));
        format!(
            "the data disk is full ({free} free in {}, and writes resume at {}): statements that write are refused for all but the admin until space is freed; the admin can drop databases, or back them up to another disk",
            self.dir.display(),
            describe(resume)
        )
    }

    /// Allocates a reserve of `len` bytes (really allocated, not a sparse file), under a
    /// temporary name until it is whole.
    fn make_reserve(&self, len: u64) -> std::io::Result<()> {
        // A crash while making one leaves a temporary here, where start-up does not look.
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name.starts_with(crate::new_file::TEMP_PREFIX) && name.ends_with(".reserve") {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        let temporary = crate::new_file::temporary_name(&self.dir, ".reserve");
        let made = crate::new_file::create_new(&temporary)
            .and_then(|file| {
                allocate(&file, len)?;
                file.sync_all()
            })
            .and_then(|()| std::fs::rename(&temporary, &self.reserve));
        if made.is_err() {
            let _ = std::fs::remove_file(&temporary);
        } else {
            tracing::info!(path = %self.reserve.display(), size = %describe(len), "reserved space on the data disk for when it fills");
        }
        made
    }
}

/// Gives `file` `len` bytes of real blocks.
fn allocate(file: &std::fs::File, len: u64) -> std::io::Result<()> {
    match rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), 0, len) {
        Ok(()) => Ok(()),
        // A file system without fallocate: zeros, written, take the same blocks.
        Err(e) if e == rustix::io::Errno::OPNOTSUPP || e == rustix::io::Errno::NOSYS => {
            use std::io::Write;
            let zeros = vec![0u8; 1 << 20];
            let mut out = std::io::BufWriter::new(file);
            let mut left = len;
            while left > 0 {
                let n = left.min(zeros.len() as u64) as usize;
                out.write_all(&zeros[..n])?;
                left -= n as u64;
            }
            out.flush()
        }
        Err(e) => Err(e.into()),
    }
}

/// "1.5 GiB", "512 KiB": a size for a message.
pub fn describe(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reserve_is_made_where_there_is_room_and_never_twice() {
        let dir = tempfile::tempdir().unwrap();
        let disk = DataDisk::new(dir.path(), 1 << 20);
        disk.check().unwrap();
        let reserve = dir.path().join(RESERVE_FILE);
        assert_eq!(std::fs::metadata(&reserve).unwrap().len(), 1 << 20);
        assert!(!disk.is_full());
        disk.check().unwrap();
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "only the reserve, no temporaries");
        // A leftover of a crash while making one goes when one is made next.
        std::fs::remove_file(&reserve).unwrap();
        let leftover = dir.path().join(".cairn-tmp-crashed.reserve");
        std::fs::write(&leftover, b"half").unwrap();
        disk.check().unwrap();
        assert!(reserve.is_file() && !leftover.exists());
        // The CLI's view never touches it; turned off, the reserve goes; none is kept when
        // none is asked for.
        DataDisk::observing(dir.path()).check().unwrap();
        assert!(reserve.is_file());
        DataDisk::new(dir.path(), 0).check().unwrap();
        assert!(!reserve.exists());
        let other = tempfile::tempdir().unwrap();
        DataDisk::new(other.path(), 0).check().unwrap();
        assert!(!other.path().join(RESERVE_FILE).exists());
    }

    #[test]
    fn free_space_is_read_and_sizes_read_well() {
        let dir = tempfile::tempdir().unwrap();
        assert!(available(dir.path()).unwrap() > 0);
        assert!(available(&dir.path().join("missing")).is_err());
        assert_eq!(describe(512), "512 bytes");
        assert_eq!(describe(3 << 29), "1.5 GiB");
    }
}
