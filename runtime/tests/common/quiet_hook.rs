//! A panic hook for tests whose handlers panic thousands of times.

use std::panic::PanicHookInfo;
use std::sync::atomic::{AtomicU64, Ordering};

/// Hook calls seen on worker threads.
pub static HOOK_CALLS: AtomicU64 = AtomicU64::new(0);

/// Does what the default hook does that matters here (formats the message, which allocates, and
/// takes stderr's lock, which records the owning OS thread) without printing the messages, and
/// counts the calls on workers; panics of the test's own threads still go to the default hook.
/// Installed once per process, before any runtime starts (the runtime wraps it).
pub fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info: &PanicHookInfo<'_>| {
            if synergy::on_worker() {
                let message = info.to_string();
                let _stderr = std::io::stderr().lock();
                std::hint::black_box(message);
                HOOK_CALLS.fetch_add(1, Ordering::Relaxed);
            } else {
                default(info);
            }
        }));
    });
}
