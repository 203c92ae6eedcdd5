//! A green stack overflow is reported and aborts; other faults reach the handler that was there
//! before (issue 39, item 7). Each case runs in a child process (this test binary again, with
//! `SYNERGY_OVERFLOW_CHILD` naming the case), since it ends that process. Before the fix the
//! green case died by SIGSEGV (status 139) with nothing on stderr.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::sync::Arc;
use synergy::transport::channel::ChannelTransport;
use synergy::{feedback_finished, feedback_start, send, Reply, Request, Runtime};

/// Recurses `depth` frames of about 1 KiB each.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth; 128]);
    if depth == 0 {
        return frame[1];
    }
    recurse(depth - 1).wrapping_add(std::hint::black_box(frame[7]))
}

/// Runs `case` in a child process; its exit status and stderr.
fn child(case: &str) -> (std::process::ExitStatus, String) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_process_entry", "--nocapture", "--test-threads=1"])
        .env("SYNERGY_OVERFLOW_CHILD", case)
        .output()
        .expect("run the child");
    (out.status, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The child's side: does nothing unless `SYNERGY_OVERFLOW_CHILD` names a case.
#[test]
fn child_process_entry() {
    let Ok(case) = std::env::var("SYNERGY_OVERFLOW_CHILD") else { return };
    let transport = Arc::new(ChannelTransport::new(1, 16, 16));
    let _rt = Runtime::builder(&common::one_worker())
        .transport(transport.clone())
        .handler(|req: Request| {
            // SAFETY: the recursion computes on its own frames only.
            unsafe { feedback_start() };
            let v = recurse(req.service_ns);
            feedback_finished();
            send(Reply::to(&req).with_value(v)).unwrap();
        })
        .start()
        .expect("runtime starts");
    match case.as_str() {
        // 10,000 frames of about 1 KiB: far past the 64 KiB green stack.
        "green" => {
            transport.submit(0, Request { id: 7, kind: 1, service_ns: 10_000, ..Request::default() }).unwrap();
            common::wait_for_replies(&transport, 1, std::time::Duration::from_secs(60));
            panic!("the request came back instead of overflowing");
        }
        // An OS thread's overflow, with the runtime's handler installed: std's report.
        "os" => {
            let t = std::thread::Builder::new().name("os-overflow".into()).stack_size(256 * 1024);
            let _ = t.spawn(|| recurse(100_000)).unwrap().join();
            panic!("the OS thread came back instead of overflowing");
        }
        other => panic!("unknown case {other}"),
    }
}

#[test]
fn a_green_stack_overflow_is_reported_with_the_request_and_the_option_then_aborts() {
    let (status, stderr) = child("green");
    assert_eq!(status.signal(), Some(libc::SIGABRT), "aborted, not killed by SIGSEGV: {status:?}\n{stderr}");
    for want in ["has overflowed its stack", "synergy: request 7 (kind 1)", "green stack of 64 KiB", "--stack-kib"] {
        assert!(stderr.contains(want), "stderr lacks {want:?}:\n{stderr}");
    }
}

#[test]
fn an_os_thread_overflow_still_reaches_the_handler_that_was_there_before() {
    let (status, stderr) = child("os");
    assert_eq!(status.signal(), Some(libc::SIGABRT), "std's handler aborts: {status:?}\n{stderr}");
    assert!(
        stderr.contains("thread 'os-overflow'") && stderr.contains("has overflowed its stack"),
        "std's own report:\n{stderr}"
    );
    assert!(!stderr.contains("synergy: request"), "not reported as a green stack:\n{stderr}");
}
