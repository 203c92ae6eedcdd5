//! One output convention for every command that produces results (issue 43, item 4):
//!
//! * a human table on stdout (the default, `--format table`), or the same results for machines
//!   with `--format json` or `--format csv` (then stdout holds nothing else: progress and notes
//!   go to stderr);
//! * `--out DIR` writes `<name>.json`, `<name>.csv` and `<name>.svg` together into DIR (created
//!   if missing), `<name>` being the command's own (`bench-ring`, `sim-syrup`, ...) unless
//!   `--name` gives another;
//! * the paths written are printed at the end, on stderr.
//!
//! The human table is printed with [`table!`](crate::table) instead of `println!`, which prints
//! only when the table is what stdout is for.

use clap::{Args, ValueEnum};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

/// What stdout carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    /// The human table.
    #[default]
    Table,
    /// The results as JSON.
    Json,
    /// The results as CSV.
    Csv,
}

/// The output options every results-producing command takes.
#[derive(Debug, Clone, Args, Default)]
pub struct OutputArgs {
    /// What stdout carries: the human table, or the results as JSON or CSV.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Also write NAME.json, NAME.csv and NAME.svg into this directory (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// The files' name in --out (default: the command's, e.g. bench-ring).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
}

/// Whether [`table!`](crate::table) prints: false once a command asked for JSON or CSV on stdout.
static TABLE_ON_STDOUT: AtomicBool = AtomicBool::new(true);

/// Called by each results command before it prints anything.
pub fn begin(o: &OutputArgs) {
    TABLE_ON_STDOUT.store(o.format == Format::Table, Ordering::Relaxed);
}

/// Whether the human table goes to stdout.
pub fn table_on_stdout() -> bool {
    TABLE_ON_STDOUT.load(Ordering::Relaxed)
}

/// `println!` for the human table: prints only with `--format table`.
#[macro_export]
macro_rules! table {
    ($($arg:tt)*) => {
        if $crate::output::table_on_stdout() {
            println!($($arg)*);
        }
    };
}

/// `print!` for the human table.
#[macro_export]
macro_rules! table_print {
    ($($arg:tt)*) => {
        if $crate::output::table_on_stdout() {
            print!($($arg)*);
        }
    };
}

/// The results of one command, in every form.
pub struct Results<'a, T: serde::Serialize> {
    /// The command's own file name (`bench-ring`).
    pub name: &'a str,
    /// The results, serialized as the JSON.
    pub value: &'a T,
    /// The CSV.
    pub csv: String,
    /// The SVG, where the command draws one.
    pub svg: Option<String>,
}

/// Prints the machine form asked for on stdout, writes the files to `--out`, and prints their
/// paths; exit status 1 if a file cannot be written.
pub fn finish<T: serde::Serialize>(o: &OutputArgs, r: Results<'_, T>) -> ExitCode {
    let json = match serde_json::to_string_pretty(r.value) {
        Ok(j) => j + "\n",
        Err(e) => return crate::run_failed(format!("cannot serialize the results: {e}")),
    };
    match o.format {
        Format::Table => {}
        Format::Json => print!("{json}"),
        Format::Csv => print!("{}", r.csv),
    }
    let Some(dir) = &o.out else { return ExitCode::SUCCESS };
    match write_files(dir, o.name.as_deref().unwrap_or(r.name), &json, &r.csv, r.svg.as_deref()) {
        Ok(paths) => {
            eprintln!("results: {}", paths.join(", "));
            ExitCode::SUCCESS
        }
        Err(e) => crate::run_failed(e),
    }
}

/// Writes `name.json`, `name.csv` and `name.svg` (if any) into `dir`; returns their paths.
pub fn write_files(dir: &Path, name: &str, json: &str, csv: &str, svg: Option<&str>) -> Result<Vec<String>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut paths = Vec::new();
    for (ext, text) in [("json", Some(json)), ("csv", Some(csv)), ("svg", svg)] {
        let Some(text) = text else { continue };
        let path = dir.join(format!("{name}.{ext}"));
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        paths.push(path.display().to_string());
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_writes_every_form_under_the_commands_name_or_the_given_one() {
        let dir = std::env::temp_dir().join(format!("synergy-output-{}", std::process::id())).join("new");
        let paths = write_files(&dir, "bench-ring", "{}\n", "a,b\n1,2\n", Some("<svg/>")).unwrap();
        assert_eq!(paths.len(), 3);
        assert_eq!(std::fs::read_to_string(dir.join("bench-ring.csv")).unwrap(), "a,b\n1,2\n");
        assert!(dir.join("bench-ring.svg").exists() && dir.join("bench-ring.json").exists());
        let paths = write_files(&dir, "other", "{}\n", "a\n", None).unwrap();
        assert_eq!(paths.len(), 2, "no SVG where the command draws none");
        std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
    }
}
