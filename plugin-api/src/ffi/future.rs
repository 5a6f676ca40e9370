//! Futures across the ABI. [`export_future`] lends a Rust future to the other side's
//! executor; [`ImportedFuture`] drives the other side's future from a Rust executor.

use std::ffi::c_void;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::abi::{self, CairnFuture, CairnOutput, CairnWaker};
use crate::{Outcome, PluginError};

type BoxedOutcome = Pin<Box<dyn Future<Output = Outcome> + Send>>;

struct Exported {
    future: BoxedOutcome,
    done: bool,
}

/// Turns a Rust future into a [`CairnFuture`] the other side polls. A panic while polling is
/// caught and reported as [`PluginError::Panicked`].
pub fn export_future(future: impl Future<Output = Outcome> + Send + 'static) -> CairnFuture {
    let state = Box::new(Exported {
        future: Box::pin(future),
        done: false,
    });
    CairnFuture {
        state: Box::into_raw(state).cast(),
        poll: Some(poll_exported),
        drop: Some(drop_exported),
    }
}

/// A future that is finished at once with `outcome`.
pub(crate) fn ready(outcome: Outcome) -> CairnFuture {
    export_future(std::future::ready(outcome))
}

unsafe extern "C" fn poll_exported(
    state: *mut c_void,
    waker: *const CairnWaker,
    output: *const CairnOutput,
) -> abi::CairnPoll {
    // SAFETY: `state` is the `Exported` made by `export_future`; the ABI forbids concurrent
    // polls and polls after `drop`, so this is the only reference.
    let exported = unsafe { &mut *state.cast::<Exported>() };
    if exported.done {
        return abi::CAIRN_READY;
    }
    // SAFETY: the ABI: `waker` is valid for this call.
    let waker = unsafe { super::waker::adopt(waker) };
    let mut cx = Context::from_waker(&waker);
    let outcome = super::catch(|| match exported.future.as_mut().poll(&mut cx) {
        Poll::Pending => Ok(None),
        Poll::Ready(outcome) => Ok(Some(outcome)),
    });
    let outcome = match outcome {
        Ok(None) => return abi::CAIRN_PENDING,
        Ok(Some(outcome)) => outcome,
        Err(panic) => Err(panic),
    };
    exported.done = true;
    // SAFETY: the ABI: `output` is valid for this call.
    unsafe { super::output::write(output, outcome) };
    abi::CAIRN_READY
}

unsafe extern "C" fn drop_exported(state: *mut c_void) {
    // SAFETY: `state` is the box made by `export_future`; the ABI calls `drop` exactly once.
    let exported = unsafe { Box::from_raw(state.cast::<Exported>()) };
    // Dropping the future runs the plugin's destructors: they must not unwind into C.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(exported)));
}

/// A [`CairnFuture`] from the other side, driven as a Rust future. Dropping it releases the
/// foreign state.
#[derive(Debug)]
pub struct ImportedFuture {
    raw: CairnFuture,
    finished: bool,
}

// SAFETY: the ABI requires every future to be pollable and droppable from any thread (never
// concurrently, which `&mut self` ensures).
unsafe impl Send for ImportedFuture {}

impl ImportedFuture {
    /// Takes ownership of a future the other side returned.
    ///
    /// # Safety
    /// `raw` was returned by a function of the ABI and not polled to completion or dropped.
    pub(crate) unsafe fn new(raw: CairnFuture) -> ImportedFuture {
        ImportedFuture {
            raw,
            finished: false,
        }
    }
}

impl Future for ImportedFuture {
    type Output = Outcome;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        if self.finished {
            return Poll::Ready(Err(PluginError::failed("future polled after it finished")));
        }
        let Some(poll) = self.raw.poll else {
            self.finished = true;
            return Poll::Ready(Err(PluginError::InvalidArgument(
                "a future without a poll function".into(),
            )));
        };
        let waker = super::waker::lend(cx.waker());
        let mut collector = super::Collector::default();
        let output = collector.output();
        // SAFETY: `raw` is a live foreign future (constructor's contract); the waker and the
        // output are valid until `poll` returns.
        let status = unsafe { poll(self.raw.state, &waker, &output) };
        super::waker::release(waker);
        if status == abi::CAIRN_PENDING {
            return Poll::Pending;
        }
        self.finished = true;
        Poll::Ready(collector.into_outcome())
    }
}

impl Drop for ImportedFuture {
    fn drop(&mut self) {
        if let Some(drop) = self.raw.drop {
            // SAFETY: the foreign state is released exactly once, here.
            unsafe { drop(self.raw.state) }
        }
    }
}
