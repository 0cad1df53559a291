//! Blocking waits that release the GIL and stay interruptible: the wait runs in short
//! slices, and between slices pending signals (Ctrl-C) are handled.

use std::time::{Duration, Instant};

use ferrows_core::{Error, Result};
use pyo3::prelude::*;

/// Longest uninterrupted wait: Ctrl-C is noticed within this time.
const SLICE: Duration = Duration::from_millis(50);

/// Converts a Python timeout in seconds (None: forever) into a duration.
pub fn timeout_from(seconds: Option<f64>) -> PyResult<Option<Duration>> {
    match seconds {
        None => Ok(None),
        Some(s) if s.is_finite() && s >= 0.0 => Ok(Some(Duration::from_secs_f64(s))),
        Some(s) if s.is_infinite() && s > 0.0 => Ok(None),
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
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let slice = match deadline {
            Some(deadline) => deadline
                .saturating_duration_since(Instant::now())
                .min(SLICE),
            None => SLICE,
        };
        let outcome = if slice.is_zero() {
            attempt(Some(Duration::ZERO))
        } else {
            py.detach(|| attempt(Some(slice)))
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
