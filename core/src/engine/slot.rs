//! A value filled once by a runtime task and waited for, with a timeout, by other threads;
//! and the condition variable that the engine's waits use.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A one-time value with blocking waiters.
#[derive(Debug)]
pub struct Slot<T> {
    value: Mutex<Option<T>>,
    filled: Condvar,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Self {
            value: Mutex::new(None),
            filled: Condvar::new(),
        }
    }
}

impl<T> Slot<T> {
    /// Stores the value and wakes every waiter.
    pub fn fill(&self, value: T) {
        *self.lock() = Some(value);
        self.filled.notify_all();
    }

    /// The slot's content, filled or not.
    pub fn lock(&self) -> MutexGuard<'_, Option<T>> {
        self.value.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits up to `timeout` (`None`: forever) for the value; `None` when the time ran out,
    /// otherwise the guard over the filled slot.
    pub fn wait(&self, timeout: Option<Duration>) -> Option<MutexGuard<'_, Option<T>>> {
        let deadline = deadline_after(timeout);
        let mut guard = self.lock();
        while guard.is_none() {
            guard = wait_until(&self.filled, guard, deadline)?;
        }
        Some(guard)
    }
}

/// The instant `timeout` from now; `None` (wait forever) for no timeout or one too large to
/// represent.
pub fn deadline_after(timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(|t| Instant::now().checked_add(t))
}

/// Waits on `condvar` until notified or `deadline` passes; `None` once it has passed.
pub fn wait_until<'a, T>(
    condvar: &Condvar,
    guard: MutexGuard<'a, T>,
    deadline: Option<Instant>,
) -> Option<MutexGuard<'a, T>> {
    match deadline {
        None => Some(condvar.wait(guard).unwrap_or_else(|e| e.into_inner())),
        Some(deadline) => {
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            let (guard, _) = condvar
                .wait_timeout(guard, deadline - now)
                .unwrap_or_else(|e| e.into_inner());
            Some(guard)
        }
    }
}

/// A condition variable whose notifications make no system call while nobody waits: `std`'s
/// makes one on every notify, and a connection notifies on every message it receives.
#[derive(Debug, Default)]
pub struct Signal {
    condvar: Condvar,
    waiting: AtomicUsize,
}

impl Signal {
    /// Waits as [`wait_until`] does. The waiter counts itself while it holds the lock, so a
    /// notifier that changed the state under that lock (then notifies, holding it or not)
    /// sees the count.
    pub fn wait_until<'a, T>(
        &self,
        guard: MutexGuard<'a, T>,
        deadline: Option<Instant>,
    ) -> Option<MutexGuard<'a, T>> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let guard = wait_until(&self.condvar, guard, deadline);
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        guard
    }

    /// Wakes every waiter, if there is one.
    pub fn notify_all(&self) {
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.condvar.notify_all();
        }
    }

    /// Wakes one waiter, if there is one.
    pub fn notify_one(&self) {
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.condvar.notify_one();
        }
    }
}
