//! `spawn_blocking`: work that would hold a worker (a blocking system call, a C library that
//! sleeps) runs on a pool of plain OS threads, and the request waits for it without its worker.

use super::oneshot;
use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, OnceLock};

type Job = Box<dyn FnOnce() + Send>;

struct Pool {
    state: Mutex<PoolState>,
    work: Condvar,
}

struct PoolState {
    jobs: VecDeque<Job>,
    threads: usize,
    idle: usize,
}

/// The most threads the pool grows to; jobs beyond them wait in its queue.
pub const BLOCKING_THREADS: usize = 64;

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool {
        state: Mutex::new(PoolState { jobs: VecDeque::new(), threads: 0, idle: 0 }),
        work: Condvar::new(),
    })
}

fn run(p: &'static Pool) {
    let mut g = p.state.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if let Some(job) = g.jobs.pop_front() {
            drop(g);
            job();
            g = p.state.lock().unwrap_or_else(|e| e.into_inner());
            continue;
        }
        g.idle += 1;
        g = p.work.wait(g).unwrap_or_else(|e| e.into_inner());
        g.idle -= 1;
    }
}

/// Runs `f` on the blocking pool; the returned receiver gets its result (`recv` waits without
/// holding the worker, and resumes on the same one). If `f` panics, the receiver gets
/// `RecvError` (the panic is reported on the pool thread, which carries on).
pub fn spawn_blocking<T, F>(f: F) -> oneshot::Receiver<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    let job: Job = Box::new(move || {
        if let Ok(v) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            let _ = tx.send(v);
        }
    });
    crate::preempt::without_preemption(|| {
        let p = pool();
        let mut g = p.state.lock().unwrap_or_else(|e| e.into_inner());
        g.jobs.push_back(job);
        if g.idle == 0 && g.threads < BLOCKING_THREADS {
            let spawned = std::thread::Builder::new().name("synergy-blocking".into()).spawn(move || run(pool()));
            match spawned {
                Ok(_) => g.threads += 1,
                // The job waits for a thread that exists; with none at all it would wait forever.
                Err(e) if g.threads == 0 => panic!("synergy::spawn_blocking: cannot start a pool thread: {e}"),
                Err(e) => log::warn!("spawn_blocking: cannot start another pool thread: {e}"),
            }
        } else {
            p.work.notify_one();
        }
    });
    rx
}
