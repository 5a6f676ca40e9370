//! The only unsafe code in Cairn: where Rust meets the C ABI of [`crate::abi`].
//!
//! Both sides use it. The plugin side ([`guest`]) turns a [`crate::Plugin`] into the exported
//! function table; the server side (`host`, behind the `host` feature) opens libraries, checks
//! descriptors and calls plugins. Everything above this module is safe Rust. Each `unsafe`
//! block says which ABI rule makes it sound; the layout tests in `tests/` and the end-to-end
//! tests with broken fixture libraries exercise them.
#![allow(unsafe_code)]

#[cfg(feature = "host")]
pub mod crash;
mod future;
pub mod guest;
#[cfg(feature = "host")]
pub mod host;
mod output;
mod waker;

pub use future::{ImportedFuture, export_future};
pub use output::Collector;

use crate::abi::{self, CairnArg, CairnPluginDescriptor, CairnPluginVTable, CairnStr, CairnValue};
use crate::{Args, PluginError, Value};

// SAFETY: a `CairnStr` is a read-only view; the ABI requires the bytes to stay valid and
// unchanged for as long as the view is used, from any thread. Descriptors put them in statics.
unsafe impl Send for CairnStr {}
// SAFETY: as above; nothing is ever written through a `CairnStr`.
unsafe impl Sync for CairnStr {}
// SAFETY: a descriptor is immutable static data: its strings and its vtable are statics of
// the plugin that are never written.
unsafe impl Sync for CairnPluginDescriptor {}
// SAFETY: a vtable holds only function pointers and its size, never written.
unsafe impl Sync for CairnPluginVTable {}

/// Reads a borrowed run of bytes.
///
/// # Safety
/// `s` must satisfy the [`CairnStr`] rule: `ptr` points to `len` readable bytes that stay
/// unchanged for `'a`, or `len` is 0.
unsafe fn bytes<'a>(s: CairnStr) -> &'a [u8] {
    if s.len == 0 || s.ptr.is_null() {
        &[]
    } else {
        // SAFETY: guaranteed by the caller (the ABI's rule for `CairnStr`).
        unsafe { std::slice::from_raw_parts(s.ptr, s.len) }
    }
}

/// Copies a borrowed string, refusing bytes that are not UTF-8.
///
/// # Safety
/// As for [`bytes`].
unsafe fn text(s: CairnStr, what: &str) -> Result<String, PluginError> {
    // SAFETY: forwarded from the caller.
    let raw = unsafe { bytes(s) };
    String::from_utf8(raw.to_vec())
        .map_err(|_| PluginError::InvalidArgument(format!("{what} is not valid UTF-8")))
}

/// Copies a borrowed value.
///
/// # Safety
/// `v.bytes` must satisfy the [`CairnStr`] rule.
unsafe fn value(v: &CairnValue) -> Result<Value, PluginError> {
    Ok(match v.kind {
        abi::CAIRN_VALUE_NULL => Value::Null,
        abi::CAIRN_VALUE_INTEGER => Value::Integer(v.integer),
        abi::CAIRN_VALUE_REAL => Value::Real(v.real),
        // SAFETY: forwarded from the caller.
        abi::CAIRN_VALUE_TEXT => Value::Text(unsafe { text(v.bytes, "a text value") }?),
        // SAFETY: forwarded from the caller.
        abi::CAIRN_VALUE_BLOB => Value::Blob(unsafe { bytes(v.bytes) }.to_vec()),
        other => {
            return Err(PluginError::InvalidArgument(format!(
                "unknown value kind {other}"
            )));
        }
    })
}

/// Copies `count` borrowed values.
///
/// # Safety
/// `values` points to `count` values satisfying [`value`]'s rule, or `count` is 0.
unsafe fn values(values: *const CairnValue, count: usize) -> Result<Vec<Value>, PluginError> {
    if count == 0 || values.is_null() {
        return Ok(Vec::new());
    }
    // SAFETY: guaranteed by the caller.
    let slice = unsafe { std::slice::from_raw_parts(values, count) };
    // SAFETY: each element satisfies the rule, as guaranteed by the caller.
    slice.iter().map(|v| unsafe { value(v) }).collect()
}

/// Copies borrowed arguments: unnamed ones are positional.
///
/// # Safety
/// `args` points to `count` valid arguments, or `count` is 0.
pub(super) unsafe fn args(args: *const CairnArg, count: usize) -> Result<Args, PluginError> {
    let args: &[CairnArg] = if count == 0 || args.is_null() {
        &[]
    } else {
        // SAFETY: guaranteed by the caller.
        unsafe { std::slice::from_raw_parts(args, count) }
    };
    let mut out = Args::default();
    for arg in args {
        // SAFETY: each argument's strings are borrowed for the call.
        let name = unsafe { text(arg.name, "an argument name") }?;
        // SAFETY: as above.
        let value = unsafe { value(&arg.value) }?;
        if name.is_empty() {
            out.positional.push(value);
        } else {
            out.named.push((name, value));
        }
    }
    Ok(out)
}

/// Borrows columns for the ABI; the views live as long as `columns`.
fn borrow_columns(columns: &[crate::Column]) -> Vec<abi::CairnColumn> {
    columns
        .iter()
        .map(|c| abi::CairnColumn {
            name: CairnStr::new(&c.name),
            kind: c.ty.to_abi(),
            reserved: 0,
        })
        .collect()
}

/// Borrows a value for the ABI; the view lives as long as `v`.
fn borrow_value(v: &Value) -> CairnValue {
    let mut out = CairnValue {
        kind: v.kind(),
        reserved: 0,
        integer: 0,
        real: 0.0,
        bytes: CairnStr::EMPTY,
    };
    match v {
        Value::Null => {}
        Value::Integer(i) => out.integer = *i,
        Value::Real(r) => out.real = *r,
        Value::Text(s) => out.bytes = CairnStr::new(s),
        Value::Blob(b) => out.bytes = CairnStr::from_bytes(b),
    }
    out
}

/// The message of a caught panic.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

thread_local! {
    /// How many [`catch`] calls are under way on this thread.
    static CATCHING: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    /// What the panic hook saw of the panic a [`catch`] on this thread is about to catch.
    static CAUGHT: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f`, turning a panic into [`PluginError::Panicked`]: no panic may unwind out of an
/// `extern "C"` function (it would abort the server). The error carries where it panicked
/// (and the backtrace, when `RUST_BACKTRACE` asks for one), so that the host logs the panic
/// as one record instead of the standard hook's raw lines on standard error.
fn catch<T>(f: impl FnOnce() -> Result<T, PluginError>) -> Result<T, PluginError> {
    install_panic_hook();
    CATCHING.with(|c| c.set(c.get() + 1));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(c.get() - 1));
    // Taken either way: a panic caught further in (a waker's) must not describe a later one.
    let report = CAUGHT.with(|c| c.borrow_mut().take());
    result.unwrap_or_else(|payload| {
        let report = report.unwrap_or_else(|| panic_message(payload.as_ref()));
        Err(PluginError::Panicked(report))
    })
}

/// Set in the server's copy of this crate (a plugin's copy never is): there the panic hook
/// before ours is the server's, which logs a panic as one record, and it still runs.
#[cfg(feature = "host")]
static HOST_SIDE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Wraps the panic hook of this copy of the standard library (a plugin's own, or the
/// server's for a builtin plugin): a panic inside [`catch`] is recorded for the error it
/// becomes; the hook that was there before still runs for every other panic, for every panic
/// on the server's side, and when the plugin is built to abort on panic (nothing will catch
/// it, and its message must not be lost).
fn install_panic_hook() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            #[cfg(feature = "host")]
            let host_side = HOST_SIDE.load(std::sync::atomic::Ordering::Relaxed);
            #[cfg(not(feature = "host"))]
            let host_side = false;
            let catching = CATCHING.with(std::cell::Cell::get) > 0;
            if !catching || host_side || cfg!(panic = "abort") {
                previous(info);
            }
            if !catching {
                return;
            }
            let mut report = panic_message(info.payload());
            if let Some(at) = info.location() {
                report.push_str(&format!(" (at {}:{})", at.file(), at.line()));
            }
            let backtrace = std::backtrace::Backtrace::capture();
            if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
                report.push_str(&format!("\nbacktrace:\n{backtrace}"));
            }
            CAUGHT.with(|c| *c.borrow_mut() = Some(report));
        }));
    });
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll, Wake, Waker};

    use super::*;
    use crate::{Outcome, Reply};

    #[derive(Default)]
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Pending once (asking to be woken), then ready with `outcome`.
    struct YieldOnce(Option<Outcome>, bool);

    impl Future for YieldOnce {
        type Output = Outcome;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
            if !self.1 {
                self.1 = true;
                cx.waker().wake_by_ref();
                let keep = cx.waker().clone();
                drop(keep);
                return Poll::Pending;
            }
            Poll::Ready(self.0.take().unwrap_or(Ok(Reply::default())))
        }
    }

    fn round_trip(future: impl Future<Output = Outcome> + Send + 'static) -> ImportedFuture {
        // SAFETY: a fresh future from `export_future`.
        unsafe { ImportedFuture::new(export_future(future)) }
    }

    fn poll(future: &mut ImportedFuture, waker: &Waker) -> Poll<Outcome> {
        Pin::new(future).poll(&mut Context::from_waker(waker))
    }

    #[test]
    fn a_future_crosses_the_abi_and_back_with_its_wakeups_and_rows() {
        let counter = Arc::new(CountingWaker::default());
        let waker = Waker::from(Arc::clone(&counter));
        let reply = Reply::rows(vec![vec![
            Value::Integer(i64::MIN),
            Value::Real(-0.5),
            Value::Text("snow ☃".into()),
            Value::Blob(vec![0, 255]),
            Value::Null,
        ]]);
        let mut imported = round_trip(YieldOnce(Some(Ok(reply.clone())), false));
        assert!(poll(&mut imported, &waker).is_pending());
        assert_eq!(
            counter.0.load(Ordering::SeqCst),
            1,
            "the wake-up crossed back"
        );
        match poll(&mut imported, &waker) {
            Poll::Ready(Ok(got)) => assert_eq!(got.rows, reply.rows),
            other => panic!("{other:?}"),
        }
        drop(imported);
        drop(waker);
        assert_eq!(
            Arc::strong_count(&counter),
            1,
            "every lent waker was released"
        );
    }

    #[test]
    fn a_panic_while_polling_is_reported_not_unwound() {
        let waker = Waker::noop();
        let mut imported = round_trip(async { panic!("kaboom") });
        match poll(&mut imported, waker) {
            // The message, then where it panicked.
            Poll::Ready(Err(PluginError::Panicked(m))) => {
                assert!(
                    m.starts_with("kaboom (at plugin-api/src/ffi/mod.rs:"),
                    "{m}"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn dropping_an_unfinished_future_releases_its_state() {
        let state = Arc::new(());
        let held = Arc::clone(&state);
        let mut imported = round_trip(async move {
            let _held = held;
            std::future::pending::<Outcome>().await
        });
        assert!(poll(&mut imported, Waker::noop()).is_pending());
        assert_eq!(Arc::strong_count(&state), 2);
        drop(imported);
        assert_eq!(Arc::strong_count(&state), 1);
    }

    #[test]
    fn text_that_is_not_utf8_is_refused_with_its_row() {
        let mut collector = Collector::default();
        let output = collector.output();
        let bad = [0xffu8, 0xfe];
        let value = CairnValue {
            kind: abi::CAIRN_VALUE_TEXT,
            reserved: 0,
            integer: 0,
            real: 0.0,
            bytes: CairnStr::from_bytes(&bad),
        };
        let push_row = output.push_row.unwrap();
        // SAFETY: the output's own function with its ctx and a value that outlives the call.
        unsafe { push_row(output.ctx, &value, 1) };
        match collector.into_outcome() {
            Err(PluginError::InvalidArgument(m)) => assert!(m.contains("row 1"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_unknown_value_kind_is_refused() {
        let value = CairnValue {
            kind: 99,
            reserved: 0,
            integer: 0,
            real: 0.0,
            bytes: CairnStr::EMPTY,
        };
        // SAFETY: an empty `CairnStr`.
        let err = unsafe { super::value(&value) }.unwrap_err();
        assert!(err.to_string().contains("unknown value kind 99"));
    }
}
