//! Wakers across the ABI: a Rust [`Waker`] lent to the other side as a [`CairnWaker`], and a
//! [`CairnWaker`] received from the other side used as a Rust [`Waker`].

use std::ffi::c_void;
use std::task::{RawWaker, RawWakerVTable, Waker};

use crate::abi::{CairnWaker, CairnWakerVTable};

/// Lends `waker` to the other side. The result owns a clone of the waker; release it with
/// [`release`] once the call it was lent to has returned.
pub(super) fn lend(waker: &Waker) -> CairnWaker {
    CairnWaker {
        data: Box::into_raw(Box::new(waker.clone())).cast_const().cast(),
        vtable: &LENT_VTABLE,
    }
}

/// Releases a waker made by [`lend`].
pub(super) fn release(waker: CairnWaker) {
    // SAFETY: `waker` came from `lend`, so `data` is the box `lent_drop` releases.
    unsafe { lent_drop(waker.data) }
}

static LENT_VTABLE: CairnWakerVTable = CairnWakerVTable {
    clone: lent_clone,
    wake: lent_wake,
    wake_by_ref: lent_wake_by_ref,
    drop: lent_drop,
};

unsafe extern "C" fn lent_clone(data: *const c_void) -> CairnWaker {
    // SAFETY: `data` is the `Box<Waker>` made by `lend` (or by this function), still alive.
    let waker = unsafe { &*data.cast::<Waker>() };
    lend(waker)
}

unsafe extern "C" fn lent_wake(data: *const c_void) {
    // SAFETY: as in `lent_clone`; `wake` consumes the waker, so the box is freed here.
    let waker = unsafe { Box::from_raw(data.cast_mut().cast::<Waker>()) };
    // A waker that panics must not unwind into C; the task is then woken by nobody, which
    // the poller's own timeouts cover.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| waker.wake()));
}

unsafe extern "C" fn lent_wake_by_ref(data: *const c_void) {
    // SAFETY: as in `lent_clone`.
    let waker = unsafe { &*data.cast::<Waker>() };
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| waker.wake_by_ref()));
}

unsafe extern "C" fn lent_drop(data: *const c_void) {
    // SAFETY: as in `lent_wake`: releasing consumes the box.
    drop(unsafe { Box::from_raw(data.cast_mut().cast::<Waker>()) });
}

/// Takes a waker the other side lent for one call and makes a Rust [`Waker`] that stays valid
/// after the call (it holds its own clone).
///
/// # Safety
/// `waker` is null or points to a valid [`CairnWaker`] whose vtable follows the ABI.
pub(super) unsafe fn adopt(waker: *const CairnWaker) -> Waker {
    // SAFETY: guaranteed by the caller.
    let Some(borrowed) = (unsafe { waker.as_ref() }) else {
        return Waker::noop().clone();
    };
    // SAFETY: a valid waker's vtable is valid (the ABI's rule).
    let Some(vtable) = (unsafe { borrowed.vtable.as_ref() }) else {
        return Waker::noop().clone();
    };
    // SAFETY: cloning is how a borrowed waker is kept.
    let owned = unsafe { (vtable.clone)(borrowed.data) };
    // SAFETY: `owned` is a fresh `CairnWaker` we own; RAW_VTABLE releases it exactly once.
    unsafe { Waker::from_raw(raw(owned)) }
}

fn raw(waker: CairnWaker) -> RawWaker {
    RawWaker::new(
        Box::into_raw(Box::new(waker)).cast_const().cast(),
        &RAW_VTABLE,
    )
}

static RAW_VTABLE: RawWakerVTable =
    RawWakerVTable::new(raw_clone, raw_wake, raw_wake_by_ref, raw_drop);

unsafe fn raw_clone(data: *const ()) -> RawWaker {
    // SAFETY: `data` is the `Box<CairnWaker>` made by `raw`, alive until `raw_drop`/`raw_wake`.
    let waker = unsafe { &*data.cast::<CairnWaker>() };
    // SAFETY: the waker is valid and owned by us; its vtable is valid (checked in `adopt`).
    raw(unsafe { ((*waker.vtable).clone)(waker.data) })
}

unsafe fn raw_wake(data: *const ()) {
    // SAFETY: as in `raw_clone`; waking consumes the box and the foreign waker with it.
    let waker = unsafe { Box::from_raw(data.cast_mut().cast::<CairnWaker>()) };
    // SAFETY: the foreign waker is valid and owned; `wake` consumes it.
    unsafe { ((*waker.vtable).wake)(waker.data) }
}

unsafe fn raw_wake_by_ref(data: *const ()) {
    // SAFETY: as in `raw_clone`.
    let waker = unsafe { &*data.cast::<CairnWaker>() };
    // SAFETY: the foreign waker is valid.
    unsafe { ((*waker.vtable).wake_by_ref)(waker.data) }
}

unsafe fn raw_drop(data: *const ()) {
    // SAFETY: as in `raw_wake`.
    let waker = unsafe { Box::from_raw(data.cast_mut().cast::<CairnWaker>()) };
    // SAFETY: the foreign waker is valid and owned; `drop` releases it.
    unsafe { ((*waker.vtable).drop)(waker.data) }
}
