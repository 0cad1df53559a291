//! The process-wide tokio runtime every connection runs on: built on first use, rebuilt in
//! a child process after `fork()` (a runtime's threads do not survive a fork).

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use tokio::runtime::{Builder, Handle, Runtime};

use crate::error::{Error, Result};

static WORKER_THREADS: AtomicUsize = AtomicUsize::new(0);
static RUNTIME: Mutex<Option<(u32, Handle)>> = Mutex::new(None);

thread_local! {
    static ON_RUNTIME_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Sets the number of runtime worker threads (0 means the default: `FERROWS_RUNTIME_THREADS`
/// if set, else one per core, between 2 and 4). Takes effect when the runtime is built;
/// fails once it runs.
pub fn set_worker_threads(count: usize) -> Result<()> {
    let guard = RUNTIME.lock().unwrap_or_else(|e| e.into_inner());
    if matches!(&*guard, Some((pid, _)) if *pid == std::process::id()) {
        return Err(Error::Config(
            "the runtime is already running; set its thread count before the first connection"
                .into(),
        ));
    }
    WORKER_THREADS.store(count, Ordering::Relaxed);
    Ok(())
}

/// The runtime's handle, building the runtime if this process has none yet.
pub fn handle() -> Result<Handle> {
    let mut guard = RUNTIME.lock().unwrap_or_else(|e| e.into_inner());
    let pid = std::process::id();
    if let Some((owner, handle)) = &*guard {
        if *owner == pid {
            return Ok(handle.clone());
        }
    }
    let runtime = build()?;
    let handle = runtime.handle().clone();
    // The runtime lives as long as the process. A runtime inherited through fork() is leaked
    // on purpose: dropping it would join threads that do not exist in this process.
    std::mem::forget(runtime);
    *guard = Some((pid, handle.clone()));
    Ok(handle)
}

/// The environment variable that sets the thread count when no call did.
pub const THREADS_VARIABLE: &str = "FERROWS_RUNTIME_THREADS";

fn build() -> Result<Runtime> {
    let from_environment = || {
        std::env::var(THREADS_VARIABLE)
            .ok()
            .and_then(|value| value.trim().parse::<usize>().ok())
            .filter(|&n| n > 0)
    };
    let threads = match WORKER_THREADS.load(Ordering::Relaxed) {
        0 => from_environment().unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4))
        }),
        n => n,
    };
    Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("ferrows-runtime")
        .enable_all()
        .on_thread_start(|| ON_RUNTIME_THREAD.with(|flag| flag.set(true)))
        .build()
        .map_err(Error::Io)
}

/// Fails with [`Error::WouldDeadlock`] on a runtime thread, where a blocking wait would stall
/// the very tasks it waits for.
pub fn check_may_block() -> Result<()> {
    if ON_RUNTIME_THREAD.with(Cell::get) {
        Err(Error::WouldDeadlock)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocking_is_refused_on_runtime_threads_only() {
        let handle = handle().unwrap();
        assert!(check_may_block().is_ok());
        let on_runtime = handle.block_on(async {
            tokio::spawn(async { check_may_block().is_err() })
                .await
                .unwrap()
        });
        assert!(on_runtime);
    }
}
