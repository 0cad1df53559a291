//! The process-wide tokio runtime every connection runs on: built on first use, rebuilt in
//! a child process after `fork()` (a runtime's threads do not survive a fork).

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use tokio::runtime::{Builder, Handle};

use crate::error::{Error, Result};

static WORKER_THREADS: AtomicUsize = AtomicUsize::new(0);
static RUNTIME: Mutex<Option<(u32, Handle)>> = Mutex::new(None);

thread_local! {
    static ON_RUNTIME_THREAD: Cell<bool> = const { Cell::new(false) };
    /// Work handed to the reader task running on this thread ([`after_read`]); `None`
    /// while no reader is in [`reading`].
    static AFTER_READ: RefCell<Option<Vec<AfterRead>>> = const { RefCell::new(None) };
}

/// Work that must not run where it is decided: a notifier runs with its connection locked.
pub type AfterRead = Box<dyn FnOnce() + Send>;

/// Runs `work` on this thread as soon as the reader task running here has unlocked the
/// connection it read, sparing the task a notifier would otherwise spawn (and the wake-up of
/// another runtime thread that may come with it). Gives `work` back when this thread is not
/// such a reader: an application thread, or a runtime task other than a reader.
pub fn after_read(work: AfterRead) -> Option<AfterRead> {
    AFTER_READ.with(|pending| match &mut *pending.borrow_mut() {
        Some(pending) => {
            pending.push(work);
            None
        }
        None => Some(work),
    })
}

/// Runs `read` (a reader task's read, which locks and unlocks its connection), then the
/// work that notifiers handed over meanwhile with [`after_read`]. That work runs once no
/// lock is held and after this thread stops collecting: what it triggers is not deferred.
pub(crate) fn reading<T>(read: impl FnOnce() -> T) -> T {
    /// Stops collecting however `read` ends: the collected work runs here, or, if `read`
    /// panicked, on tasks of its own (work run while unwinding could not panic safely, and
    /// dropped it would leave, say, a queue marked as draining for good).
    struct Collecting;
    impl Drop for Collecting {
        fn drop(&mut self) {
            let collected = AFTER_READ.with(|pending| pending.borrow_mut().take());
            let collected = collected.into_iter().flatten();
            if !std::thread::panicking() {
                collected.for_each(|work| work());
            } else if let Ok(handle) = handle() {
                collected.for_each(|work| drop(handle.spawn(async move { work() })));
            }
        }
    }
    AFTER_READ.with(|pending| *pending.borrow_mut() = Some(Vec::new()));
    let _collecting = Collecting;
    read()
}

/// Sets the number of runtime worker threads (0 means the default: `FERROWS_RUNTIME_THREADS`
/// if set, else one per core this process may run on, at most 4). Takes effect when the
/// runtime is built; fails once it runs.
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
    let handle = build()?;
    *guard = Some((pid, handle.clone()));
    Ok(handle)
}

/// The environment variable that sets the thread count when no call did.
pub const THREADS_VARIABLE: &str = "FERROWS_RUNTIME_THREADS";

/// Builds the runtime, which lives as long as the process: a runtime inherited through
/// fork() is leaked on purpose, as dropping it would join threads that do not exist in this
/// process.
fn build() -> Result<Handle> {
    let from_environment = || {
        std::env::var(THREADS_VARIABLE)
            .ok()
            .and_then(|value| value.trim().parse::<usize>().ok())
            .filter(|&n| n > 0)
    };
    let threads = match WORKER_THREADS.load(Ordering::Relaxed) {
        0 => from_environment().unwrap_or_else(|| {
            default_threads(std::thread::available_parallelism().ok().map(|n| n.get()))
        }),
        n => n,
    };
    if threads == 1 {
        return single_thread();
    }
    let runtime = Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("ferrows-runtime")
        .enable_all()
        .on_thread_start(|| ON_RUNTIME_THREAD.with(|flag| flag.set(true)))
        .build()
        .map_err(Error::Io)?;
    let handle = runtime.handle().clone();
    std::mem::forget(runtime);
    Ok(handle)
}

/// One runtime thread: a current-thread runtime that a thread of its own drives. Its tasks
/// are served in the order they became ready; a multi-thread runtime with one worker let the
/// connections kept in its worker's local queue starve those it had moved to its global
/// queue (1,000 busy connections: p99 latency 150 ms, against 17 ms with two workers).
fn single_thread() -> Result<Handle> {
    let runtime = Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Io)?;
    let handle = runtime.handle().clone();
    std::thread::Builder::new()
        .name("ferrows-runtime".into())
        .spawn(move || {
            ON_RUNTIME_THREAD.with(|flag| flag.set(true));
            runtime.block_on(std::future::pending::<()>());
        })
        .map_err(Error::Io)?;
    Ok(handle)
}

/// The thread count when none was set, from the cores this process may run on (its CPU
/// affinity): one per core, at most 4, and 2 when unknown. One core gets one thread: a
/// second could only take turns with the first, each turn a context switch (a C server
/// pinned to one core spent up to 40% more CPU per message with two; see
/// `single_thread` for why one thread is a current-thread runtime).
fn default_threads(cores: Option<usize>) -> usize {
    cores.map_or(2, |cores| cores.clamp(1, 4))
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

    #[test]
    fn one_thread_per_core_up_to_four() {
        assert_eq!(default_threads(Some(1)), 1);
        assert_eq!(default_threads(Some(2)), 2);
        assert_eq!(default_threads(Some(3)), 3);
        assert_eq!(default_threads(Some(16)), 4);
        assert_eq!(default_threads(None), 2);
    }

    /// Work handed over during a read runs after it, in order; elsewhere it is given back.
    #[test]
    fn work_after_a_read_runs_once_the_read_is_done() {
        use std::sync::{Arc, Mutex};
        let log = Arc::new(Mutex::new(Vec::new()));
        let record = |entry: &'static str| {
            let log = log.clone();
            Box::new(move || log.lock().unwrap().push(entry)) as AfterRead
        };
        assert!(after_read(record("outside")).is_some());
        let outcome = reading(|| {
            assert!(after_read(record("first")).is_none());
            assert!(after_read(record("second")).is_none());
            log.lock().unwrap().push("read");
            7
        });
        assert_eq!(outcome, 7);
        assert_eq!(*log.lock().unwrap(), ["read", "first", "second"]);
        assert!(after_read(record("after")).is_some());
        // A read that panics stops the collecting too (later work is given back), and what
        // it collected still runs, on the runtime.
        let (ran, done) = std::sync::mpsc::channel();
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            reading(|| {
                let ran = Box::new(move || ran.send(()).unwrap()) as AfterRead;
                assert!(after_read(ran).is_none());
                panic!("a read failed");
            })
        }));
        assert!(panicked.is_err());
        assert!(after_read(record("after a panic")).is_some());
        done.recv_timeout(std::time::Duration::from_secs(10))
            .expect("the work collected before the panic ran");
    }
}
