//! The binary's progress reporter (issue 43, item 6): an `indicatif` bar with the elapsed time
//! and an ETA on stderr, for the loops that report through `synergy_eval::progress`. Installed
//! only when both stdout and stderr are terminals (not `TERM=dumb`) and `--quiet` was not given,
//! so a pipe, a file or CI gets no bars and no control characters.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Mutex;

struct Bars(Mutex<Option<ProgressBar>>);

impl synergy_eval::progress::Reporter for Bars {
    fn start(&self, what: &str, total: u64, unit: &str) {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        let template = format!("{{msg}} [{{bar:30}}] {{pos}}/{{len}} {unit}, {{elapsed}} elapsed, ETA {{eta}}");
        bar.set_style(ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()));
        bar.set_message(what.to_string());
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar);
    }

    fn set(&self, done: u64) {
        if let Some(b) = self.0.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            b.set_position(done);
        }
    }

    fn println(&self, line: &str) {
        match self.0.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            Some(b) => b.println(line),
            None => eprintln!("{line}"),
        }
    }

    fn set_total(&self, total: u64) {
        if let Some(b) = self.0.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            b.set_length(total);
        }
    }

    fn finish(&self) {
        if let Some(b) = self.0.lock().unwrap_or_else(|e| e.into_inner()).take() {
            b.finish_and_clear();
        }
    }
}

/// Whether bars are drawn for this run: both streams on a terminal that can redraw a line (not
/// `TERM=dumb`, as a serial console logged to a file is: the QEMU bench's guest sets it), and not
/// `--quiet`.
pub fn wanted(quiet: bool) -> bool {
    !quiet
        && std::io::stdout().is_terminal()
        && std::io::stderr().is_terminal()
        && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
}

/// Installs the bar reporter if `wanted`.
pub fn install(quiet: bool) {
    if wanted(quiet) {
        synergy_eval::progress::set_reporter(Box::new(Bars(Mutex::new(None))));
    }
}
