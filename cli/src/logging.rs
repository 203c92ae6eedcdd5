//! Where the libraries' log records go: the libraries log through `log` and never print; the
//! binary prints warnings and errors on stderr, prefixed `synergy:` (more with
//! `SYNERGY_LOG=info|debug|trace`, less with `SYNERGY_LOG=error|off`).

use log::{LevelFilter, Log, Metadata, Record};

struct Stderr;

impl Log for Stderr {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if self.enabled(record.metadata()) {
            eprintln!("synergy: {}", record.args());
        }
    }

    fn flush(&self) {}
}

static LOGGER: Stderr = Stderr;

/// Installs the stderr logger at the level `SYNERGY_LOG` names (default: warnings).
pub fn init() {
    let level = match std::env::var("SYNERGY_LOG").as_deref().map(str::to_ascii_lowercase).as_deref() {
        Ok("off") => LevelFilter::Off,
        Ok("error") => LevelFilter::Error,
        Ok("info") => LevelFilter::Info,
        Ok("debug") => LevelFilter::Debug,
        Ok("trace") => LevelFilter::Trace,
        _ => LevelFilter::Warn,
    };
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}
