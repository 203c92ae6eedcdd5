//! Progress of long runs (sweeps, simulations, benchmark rounds), reported through one facade so
//! that the libraries that loop (the simulator, the benchmarks) need no terminal code: they open
//! a [`Task`] and advance it, and whoever installed a [`Reporter`] (the `synergy` binary draws
//! bars with an ETA, on a terminal only and never with `--quiet`) shows it. Without a reporter
//! every call is a load and a branch.
//!
//! Only the outermost task is shown: a task opened while another is open (a sweep's point that
//! is itself a loop) advances nothing, so a bar never jumps back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// What draws progress.
pub trait Reporter: Send + Sync {
    /// A task of `total` steps (`unit` names them: "points", "rounds", "ms") began.
    fn start(&self, what: &str, total: u64, unit: &str);
    /// The open task is at `done` of its steps.
    fn set(&self, done: u64);
    /// The open task ended (finished or abandoned).
    fn finish(&self);
    /// Prints a line above the bar (a point's result while a sweep runs).
    fn println(&self, line: &str);
    /// The open task turned out to have `total` steps (known only part-way through).
    fn set_total(&self, total: u64);
}

static REPORTER: OnceLock<Box<dyn Reporter>> = OnceLock::new();
static OPEN: AtomicBool = AtomicBool::new(false);

/// Installs the process's reporter; false if one was installed already.
pub fn set_reporter(r: Box<dyn Reporter>) -> bool {
    REPORTER.set(r).is_ok()
}

/// A line of progress news (a sweep's finished point) on stderr: above the bar when one is
/// drawn, else plainly, so it is never torn by the bar's redraws.
pub fn note(line: &str) {
    match REPORTER.get() {
        Some(r) if OPEN.load(Ordering::Acquire) => r.println(line),
        _ => eprintln!("{line}"),
    }
}

/// A loop in progress; ends its bar when dropped.
pub struct Task {
    shown: bool,
    done: u64,
}

/// Opens a task of `total` steps. Shown only if a reporter is installed and no other task is
/// open.
pub fn task(what: &str, total: u64, unit: &str) -> Task {
    let shown = match REPORTER.get() {
        Some(r) if !OPEN.swap(true, Ordering::AcqRel) => {
            r.start(what, total, unit);
            true
        }
        _ => false,
    };
    Task { shown, done: 0 }
}

impl Task {
    /// One more step done.
    pub fn inc(&mut self) {
        self.done += 1;
        if self.shown {
            if let Some(r) = REPORTER.get() {
                r.set(self.done);
            }
        }
    }

    /// The task has `total` steps after all (learnt part-way through).
    pub fn set_total(&mut self, total: u64) {
        if self.shown {
            if let Some(r) = REPORTER.get() {
                r.set_total(total);
            }
        }
    }

    /// Runs `f`, showing the time it takes against `expected` (a run of fixed duration: the
    /// demo, the load generator). The bar is advanced by a ticker thread while `f` runs.
    pub fn timed<R>(what: &str, expected: Duration, f: impl FnOnce() -> R) -> R {
        let ms = expected.as_millis().max(1) as u64;
        let t = task(what, ms, "ms");
        if !t.shown {
            return f();
        }
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                let t0 = Instant::now();
                while !stop.load(Ordering::Acquire) {
                    if let Some(r) = REPORTER.get() {
                        r.set((t0.elapsed().as_millis() as u64).min(ms));
                    }
                    std::thread::park_timeout(Duration::from_millis(100));
                }
            });
            let out = f();
            stop.store(true, Ordering::Release);
            drop(t);
            out
        })
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        if self.shown {
            if let Some(r) = REPORTER.get() {
                r.finish();
            }
            OPEN.store(false, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct Recorder(Mutex<Vec<String>>);
    impl Reporter for &'static Recorder {
        fn start(&self, what: &str, total: u64, unit: &str) {
            self.0.lock().unwrap().push(format!("start {what} {total} {unit}"));
        }
        fn set(&self, done: u64) {
            self.0.lock().unwrap().push(format!("set {done}"));
        }
        fn finish(&self) {
            self.0.lock().unwrap().push("finish".into());
        }
        fn println(&self, line: &str) {
            self.0.lock().unwrap().push(format!("println {line}"));
        }
        fn set_total(&self, total: u64) {
            self.0.lock().unwrap().push(format!("total {total}"));
        }
    }

    /// One test owns the process-wide reporter (installed once).
    #[test]
    fn the_outermost_task_is_reported_and_ends_when_dropped() {
        let mut quiet = task("before any reporter", 2, "points");
        quiet.inc();
        drop(quiet);
        static REC: Recorder = Recorder(Mutex::new(Vec::new()));
        assert!(set_reporter(Box::new(&REC)));
        assert!(!set_reporter(Box::new(&REC)), "one reporter per process");
        {
            let mut outer = task("sweep", 2, "points");
            {
                let mut inner = task("a point's rounds", 3, "rounds");
                inner.inc();
            }
            outer.inc();
            note("point 1 done");
            outer.inc();
        }
        let v = Task::timed("demo", Duration::from_millis(1), || 7);
        assert_eq!(v, 7);
        let log = REC.0.lock().unwrap().clone();
        assert_eq!(&log[..5], ["start sweep 2 points", "set 1", "println point 1 done", "set 2", "finish"]);
        assert_eq!(log[5], "start demo 1 ms");
        assert_eq!(log.last().unwrap(), "finish");
        assert!(!OPEN.load(Ordering::Acquire), "no task left open");
    }
}
