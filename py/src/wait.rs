//! Blocking waits that release the GIL and stay interruptible: on the main thread, where
//! Python runs signal handlers, the wait runs in short slices and pending signals (Ctrl-C)
//! are handled between them. Other threads wait in one piece.

use std::sync::OnceLock;
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use ferrows_core::{Error, Result};
use pyo3::prelude::*;

/// Longest uninterrupted wait on the main thread: Ctrl-C is noticed within this time.
const SLICE: Duration = Duration::from_millis(20);

/// The thread that imported the module: Python's main thread, the one that gets signals.
static MAIN_THREAD: OnceLock<ThreadId> = OnceLock::new();

/// Records the current thread as the main thread (called when the module is imported).
pub fn remember_main_thread() {
    let _ = MAIN_THREAD.set(std::thread::current().id());
}

fn on_main_thread() -> bool {
    MAIN_THREAD.get() == Some(&std::thread::current().id())
}

/// Converts a Python timeout in seconds (None: forever) into a duration.
pub fn timeout_from(seconds: Option<f64>) -> PyResult<Option<Duration>> {
    match seconds {
        None => Ok(None),
        // Beyond what a Duration holds (or infinity) is forever.
        Some(s) if s >= 0.0 => Ok(Duration::try_from_secs_f64(s).ok()),
        Some(s) => Err(pyo3::exceptions::PyValueError::new_err(format!(
            "timeout must be a non-negative number of seconds, not {s}"
        ))),
    }
}

/// Runs `attempt` with the GIL released, in slices, until it gives an answer or `timeout`
/// passes. `attempt` gets the slice to wait and returns `Ok(None)` when the slice ran out;
/// its errors become exceptions through `to_exception`.
pub fn wait_interruptibly<T: Send>(
    py: Python<'_>,
    timeout: Option<Duration>,
    mut attempt: impl FnMut(Option<Duration>) -> Result<Option<T>> + Send,
    to_exception: impl FnOnce(Error) -> PyErr,
) -> PyResult<Option<T>> {
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let slice_limit = on_main_thread().then_some(SLICE);
    loop {
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let slice = match (left, slice_limit) {
            (Some(left), Some(limit)) => Some(left.min(limit)),
            (left, limit) => left.or(limit),
        };
        let outcome = if slice == Some(Duration::ZERO) {
            attempt(slice)
        } else {
            py.detach(|| attempt(slice))
        };
        match outcome {
            Ok(Some(value)) => return Ok(Some(value)),
            Ok(None) => {}
            Err(error) => return Err(to_exception(error)),
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(None);
        }
        py.check_signals()?;
    }
}

/// Adapts a core call that reports a spent slice as [`Error::Timeout`] to
/// [`wait_interruptibly`]'s `Ok(None)`.
pub fn slice_timeout<T>(result: Result<T>) -> Result<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(Error::Timeout(_)) => Ok(None),
        Err(error) => Err(error),
    }
}
