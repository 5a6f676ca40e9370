//! The only unsafe code in Cairn: where Rust meets the C ABI of [`crate::abi`].
//!
//! Both sides use it. The plugin side ([`guest`]) turns a [`crate::Plugin`] into the exported
//! function table; the server side (`host`, behind the `host` feature) opens libraries, checks
//! descriptors and calls plugins. Everything above this module is safe Rust. Each `unsafe`
//! block says which ABI rule makes it sound; the layout tests in `tests/` and the end-to-end
//! tests with broken fixture libraries exercise them.
#![allow(unsafe_code)]

mod future;
pub mod guest;
#[cfg(feature = "host")]
pub mod host;
mod output;
mod waker;

pub use future::{ImportedFuture, export_future};
pub use output::Collector;

use crate::abi::{self, CairnPluginDescriptor, CairnPluginVTable, CairnStr, CairnValue};
use crate::{PluginError, Value};

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

/// Runs `f`, turning a panic into [`PluginError::Panicked`]: no panic may unwind out of an
/// `extern "C"` function (it would abort the server).
fn catch<T>(f: impl FnOnce() -> Result<T, PluginError>) -> Result<T, PluginError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|payload| Err(PluginError::Panicked(panic_message(payload.as_ref()))))
}
