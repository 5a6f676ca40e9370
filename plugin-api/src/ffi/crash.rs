//! The host's crash report. A plugin's native code can kill the server (a bad pointer,
//! `abort()`, `exit()`); this cannot be survived in-process, but it can leave a trace: each
//! call into a plugin marks its thread with the plugin and what it runs, and a fatal signal
//! or an `exit()` on a marked thread writes one log record naming them, in the log's format,
//! before the process dies (as Redis writes its crash report).
//!
//! The signal handler may only do what is async-signal-safe: it reads this thread's marker,
//! formats into a buffer on its stack, and `write`s it to standard error.

use std::cell::Cell;
use std::future::Future;
use std::marker::PhantomData;
use std::os::raw::{c_int, c_void};
use std::pin::Pin;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

/// A name as the marker keeps it: copied, so the handler never reads memory it cannot trust,
/// and cut at 64 bytes (plugin names are at most 63).
#[derive(Clone, Copy)]
struct Name {
    bytes: [u8; 64],
    len: u8,
}

impl Name {
    fn of(text: &str) -> Name {
        let mut bytes = [0u8; 64];
        let len = text.len().min(bytes.len());
        bytes[..len].copy_from_slice(&text.as_bytes()[..len]);
        Name {
            bytes,
            len: len as u8,
        }
    }

    fn bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// What a thread is running: plugin `plugin`'s `what` (`procedure`, `job`, `start`…) named
/// `detail`.
#[derive(Clone, Copy)]
struct Marker {
    plugin: Name,
    what: &'static str,
    detail: Name,
}

thread_local! {
    // Const-initialised and without a destructor: reading it needs no allocation, so the
    // signal handler may.
    static RUNNING: Cell<Option<Marker>> = const { Cell::new(None) };
}

/// While alive, the current thread counts as running `plugin`'s code; dropping it restores
/// what was marked before. Not `Send`: the mark belongs to one thread.
#[must_use = "the thread is marked only while this lives"]
pub struct Running {
    previous: Option<Marker>,
    _not_send: PhantomData<*const ()>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running").finish_non_exhaustive()
    }
}

/// Marks the current thread as running `plugin`'s `what` named `detail` (may be empty).
pub fn running(plugin: &str, what: &'static str, detail: &str) -> Running {
    let marker = Marker {
        plugin: Name::of(plugin),
        what,
        detail: Name::of(detail),
    };
    Running {
        previous: RUNNING.with(|r| r.replace(Some(marker))),
        _not_send: PhantomData,
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.with(|r| r.set(self.previous));
    }
}

/// A plugin's future whose every poll, and its drop, run marked with [`running`].
pub struct InPlugin<T> {
    plugin: String,
    what: &'static str,
    detail: String,
    inner: Option<Pin<Box<dyn Future<Output = T> + Send>>>,
}

impl<T> std::fmt::Debug for InPlugin<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InPlugin")
            .field("plugin", &self.plugin)
            .field("what", &self.what)
            .field("detail", &self.detail)
            .finish_non_exhaustive()
    }
}

impl<T> InPlugin<T> {
    /// Calls `make` (which calls into the plugin and returns the plugin's future) and then
    /// the future, all marked as `plugin`'s `what` named `detail`.
    pub fn call<F: Future<Output = T> + Send + 'static>(
        plugin: &str,
        what: &'static str,
        detail: &str,
        make: impl FnOnce() -> F,
    ) -> InPlugin<T> {
        let inner = {
            let _running = running(plugin, what, detail);
            make()
        };
        InPlugin {
            plugin: plugin.to_owned(),
            what,
            detail: detail.to_owned(),
            inner: Some(Box::pin(inner)),
        }
    }
}

impl<T> Future for InPlugin<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let this = self.get_mut();
        let _running = running(&this.plugin, this.what, &this.detail);
        match this.inner.as_mut() {
            Some(inner) => inner.as_mut().poll(cx),
            None => Poll::Pending,
        }
    }
}

impl<T> Drop for InPlugin<T> {
    fn drop(&mut self) {
        // Dropping a plugin's future runs its code too (its state's `drop`).
        if let Some(inner) = self.inner.take() {
            let _running = running(&self.plugin, self.what, &self.detail);
            drop(inner);
        }
    }
}

/// The signals that end the process, with what they mean.
const FATAL: [(c_int, &str, &str); 5] = [
    (libc::SIGSEGV, "SIGSEGV", "invalid memory access"),
    (libc::SIGBUS, "SIGBUS", "bus error"),
    (libc::SIGILL, "SIGILL", "illegal instruction"),
    (libc::SIGFPE, "SIGFPE", "arithmetic fault"),
    (libc::SIGABRT, "SIGABRT", "abort() was called"),
];

/// The actions installed before ours, in `FATAL`'s order: a report hands the signal on.
static PREVIOUS: OnceLock<[libc::sigaction; 5]> = OnceLock::new();
static JSON: AtomicBool = AtomicBool::new(false);
/// One record per death: a stack overflow is a SIGSEGV and then the runtime's abort.
static REPORTED: AtomicBool = AtomicBool::new(false);

/// Installs the crash report for fatal signals and `exit()`; `json` writes it as the JSON log
/// format does. Call once, after logging is set up; later calls only change the format.
pub fn install_crash_report(json: bool) {
    JSON.store(json, Ordering::Relaxed);
    super::HOST_SIDE.store(true, Ordering::Relaxed);
    let mut installed_now = false;
    PREVIOUS.get_or_init(|| {
        installed_now = true;
        // SAFETY: an all-zero `sigaction` is a valid value (no handler, empty mask).
        let mut previous: [libc::sigaction; 5] = unsafe { std::mem::zeroed() };
        for ((signal, _, _), old) in FATAL.iter().zip(previous.iter_mut()) {
            // SAFETY: reading the current action into valid storage changes nothing.
            unsafe { libc::sigaction(*signal, std::ptr::null(), old) };
        }
        previous
    });
    if !installed_now {
        return;
    }
    // Only now that the actions to hand on to are known.
    for (signal, _, _) in FATAL {
        // SAFETY: `action` is a fully initialised `sigaction` whose handler has the
        // SA_SIGINFO signature.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_fatal_signal as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
    // SAFETY: `on_exit` is an `extern "C" fn()` that lives as long as the process.
    unsafe { libc::atexit(on_exit) };
}

extern "C" fn on_fatal_signal(signal: c_int, info: *mut libc::siginfo_t, _context: *mut c_void) {
    let index = FATAL.iter().position(|(s, _, _)| *s == signal);
    if let Some(i) = index {
        let (_, name, meaning) = FATAL[i];
        report(Some((name, meaning)));
        if let Some(previous) = PREVIOUS.get() {
            // SAFETY: restoring the action that was installed before ours.
            unsafe { libc::sigaction(signal, &previous[i], std::ptr::null_mut()) };
        }
    }
    // SAFETY: the kernel passes a valid `siginfo_t` to an SA_SIGINFO handler.
    let sent = unsafe { info.as_ref() }.is_none_or(|i| i.si_code <= 0);
    if sent {
        // Sent by kill() or raise() (abort() too): send it again, to the previous action.
        // SAFETY: raise is async-signal-safe.
        unsafe { libc::raise(signal) };
    }
    // A fault: returning runs the faulting instruction again, under the previous action
    // (the runtime's stack-overflow report, or the default core dump).
}

extern "C" fn on_exit() {
    if RUNNING.try_with(Cell::get).ok().flatten().is_some() {
        report(None);
    }
}

/// Writes the crash record for a fatal signal (`Some((name, meaning))`) or an `exit()`.
fn report(signal: Option<(&str, &str)>) {
    if REPORTED.swap(true, Ordering::Relaxed) {
        return;
    }
    let marker = RUNNING.try_with(Cell::get).ok().flatten();
    let mut line = Line::new();
    let json = JSON.load(Ordering::Relaxed);
    if json {
        line.push(b"{\"timestamp\":\"");
        line.timestamp();
        line.push(b"\",\"level\":\"ERROR\",\"fields\":{\"message\":\"");
    } else {
        line.timestamp();
        line.push(b" ERROR ");
    }
    match (signal, marker) {
        (Some((name, meaning)), Some(_)) => {
            line.push(b"fatal signal ");
            line.push(name.as_bytes());
            line.push(b" (");
            line.push(meaning.as_bytes());
            line.push(b") in a plugin's code; the server dies now (fix or remove the plugin)");
        }
        (Some((name, meaning)), None) => {
            line.push(b"fatal signal ");
            line.push(name.as_bytes());
            line.push(b" (");
            line.push(meaning.as_bytes());
            line.push(b") while no plugin code was running on that thread (a thread a plugin started itself, or the server); the server dies now");
        }
        (None, _) => line.push(
            b"a plugin called exit() from its code; the server process ends now (plugins report errors, never exit)",
        ),
    }
    if let Some(marker) = &marker {
        let (plugin, detail) = (marker.plugin.bytes(), marker.detail.bytes());
        if json {
            line.push(b"\",\"plugin\":\"");
            line.push_clean(plugin);
            line.push(b"\",\"in\":\"");
        } else {
            line.push(b" plugin=");
            line.push_clean(plugin);
            line.push(b" in=\"");
        }
        line.push(marker.what.as_bytes());
        if !detail.is_empty() {
            line.push(b" ");
            line.push_clean(detail);
        }
        line.push(b"\"");
    } else if json {
        line.push(b"\"");
    }
    if json {
        line.push(b"}}");
    }
    line.push(b"\n");
    line.write_to_stderr();
}

/// A log line built without allocating; what does not fit is cut off.
struct Line {
    buffer: [u8; 768],
    len: usize,
}

impl Line {
    fn new() -> Line {
        Line {
            buffer: [0; 768],
            len: 0,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        let room = self.buffer.len() - self.len;
        let n = bytes.len().min(room);
        self.buffer[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }

    /// Text from a plugin, without what would need escaping (names are identifiers anyway).
    fn push_clean(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b >= 0x20 && b != b'"' && b != b'\\' {
                self.push(&[b]);
            }
        }
    }

    fn number(&mut self, value: u64, width: usize) {
        let mut digits = [b'0'; 20];
        let mut v = value;
        let mut i = digits.len();
        while v > 0 || digits.len() - i < width {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
        self.push(&digits[i..]);
    }

    /// Now, in UTC, as the log's timer writes it: `2026-12-02T01:47:04.123456Z`.
    fn timestamp(&mut self) {
        // SAFETY: an all-zero timespec is valid; clock_gettime is async-signal-safe.
        let mut now: libc::timespec = unsafe { std::mem::zeroed() };
        // SAFETY: `now` is valid storage.
        unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) };
        let seconds = now.tv_sec.max(0) as u64;
        let (year, month, day) = civil_from_days((seconds / 86_400) as i64);
        let second_of_day = seconds % 86_400;
        self.number(year as u64, 4);
        self.push(b"-");
        self.number(month, 2);
        self.push(b"-");
        self.number(day, 2);
        self.push(b"T");
        self.number(second_of_day / 3600, 2);
        self.push(b":");
        self.number(second_of_day / 60 % 60, 2);
        self.push(b":");
        self.number(second_of_day % 60, 2);
        self.push(b".");
        self.number(now.tv_nsec.max(0) as u64 / 1000, 6);
        self.push(b"Z");
    }

    fn write_to_stderr(&self) {
        let mut written = 0;
        while written < self.len {
            // SAFETY: the range lies inside the buffer; write is async-signal-safe.
            let n = unsafe {
                libc::write(
                    libc::STDERR_FILENO,
                    self.buffer[written..self.len].as_ptr().cast(),
                    self.len - written,
                )
            };
            if n <= 0 {
                return;
            }
            written += n as usize;
        }
    }
}

/// The proleptic Gregorian date of a day counted from 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u64, u64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u64;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u64;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_from_day_numbers() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_789), (2026, 12, 2));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn marks_nest_and_restore() {
        let outer = running("a", "procedure", "p");
        {
            let _inner = running("b", "job", "");
            let plugin = RUNNING.with(Cell::get).map(|m| m.plugin.bytes().to_vec());
            assert_eq!(plugin.as_deref(), Some(&b"b"[..]));
        }
        assert_eq!(RUNNING.with(Cell::get).map(|m| m.what), Some("procedure"));
        drop(outer);
        assert!(RUNNING.with(Cell::get).is_none());
    }

    #[test]
    fn numbers_are_padded() {
        let mut line = Line::new();
        line.number(7, 2);
        line.number(0, 1);
        line.number(123_456, 6);
        assert_eq!(&line.buffer[..line.len], b"070123456");
    }
}
