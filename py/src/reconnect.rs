//! The core's reconnection backoff for both Python faces.

use std::time::Duration;

use ferrows_core::reconnect::{Backoff, BackoffPolicy};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::errors::to_py_err;

fn seconds(value: f64, name: &str) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| PyValueError::new_err(format!("{name} must be >= 0 seconds, not {value}")))
}

/// The delays (seconds) between reconnection attempts: an endless iterator.
#[pyclass(module = "ferrows._ferrows", name = "Backoff")]
pub struct PyBackoff {
    inner: Backoff,
}

#[pymethods]
impl PyBackoff {
    #[new]
    fn new(py: Python<'_>, initial_delay: f64, factor: f64, max_delay: f64) -> PyResult<Self> {
        let policy = BackoffPolicy {
            initial_delay: seconds(initial_delay, "the initial delay")?,
            factor,
            max_delay: seconds(max_delay, "the maximum delay")?,
            ..Default::default()
        };
        policy.validate().map_err(|e| to_py_err(py, e, None))?;
        Ok(Self {
            inner: Backoff::new(policy),
        })
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self) -> Option<f64> {
        self.inner.next_delay().map(|delay| delay.as_secs_f64())
    }
}
