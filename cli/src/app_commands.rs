//! Application set-up shared by the binary's subcommands (`--app synthetic|leveldb`), and
//! `synergy bench leveldb`, which measures LevelDB's GET and SCAN service times (Table 6.1).

#[cfg(not(feature = "leveldb"))]
use crate::unavailable;
#[cfg(feature = "leveldb")]
use crate::{run_failed, usage_error};
use std::path::PathBuf;
use std::process::ExitCode;
use synergy_apps::Handler;

/// The application `serve`/`sweep --app` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AppName {
    /// Requests spin for their requested service time (the thesis's synthetic workloads).
    Synthetic,
    /// Every request is answered at once with its own body (`synergy load --body-bytes`).
    Echo,
    /// memcached's text protocol over TCP (`serve` only; `--bind` is its TCP address).
    Memcached,
    /// LevelDB GET/SCAN on a preloaded store (needs the `leveldb` cargo feature).
    Leveldb,
}
use synergy_eval::workload::{Workload, WorkloadName};

#[cfg(not(feature = "leveldb"))]
const NO_LEVELDB: &str = "this synergy binary was built without LevelDB; build it with \
     `cargo build --release -p synergy-cli --features leveldb` (needs `apt-get install libleveldb-dev`)";

/// Which application the server runs, and the LevelDB store's set-up.
#[derive(clap::Args)]
pub(crate) struct AppArgs {
    /// The application: the synthetic spinner (`--workload` gives its request types), echo (each
    /// request answered with its own body), or LevelDB GET/SCAN (50/50, the thesis's real application; needs the `leveldb` cargo feature).
    #[arg(long, value_enum, default_value = "synthetic")]
    app: AppName,
    /// LevelDB: the database directory, created fresh and removed at exit; keep it on tmpfs
    /// [default: /dev/shm/synergy-leveldb-<pid>].
    #[arg(long)]
    leveldb_dir: Option<PathBuf>,
    /// LevelDB: entries preloaded (keys key-000000 …); GETs draw from them, SCANs read them all.
    #[arg(long, default_value_t = synergy_eval::workload::LEVELDB_ENTRIES)]
    leveldb_entries: u32,
    /// memcached: the store's memory limit in MiB (memcached's -m).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    memory_mb: u64,
    /// memcached: the largest item in bytes, key and value together (memcached's -I).
    #[arg(long, default_value_t = 1 << 20, value_parser = clap::value_parser!(u64).range(1024..=1 << 30))]
    item_max: u64,
}

/// A server's application, ready to serve: what the load generator should offer it, the
/// handler, and (LevelDB) the service times measured on this machine.
pub(crate) struct ServedApp {
    pub workload: Workload,
    pub handler: Handler,
    pub measured: Option<serde_json::Value>,
}

impl AppArgs {
    /// The memcached service's parameters, if that is the application.
    pub(crate) fn memcached(&self) -> Option<synergy_memcached::Params> {
        (self.app == AppName::Memcached).then_some(synergy_memcached::Params {
            memory_limit: (self.memory_mb as usize) << 20,
            item_max: self.item_max as usize,
        })
    }

    /// Why this application cannot run with this binary (exit 3), if it cannot.
    pub(crate) fn unavailable_here(&self) -> Option<String> {
        #[cfg(feature = "leveldb")]
        {
            None
        }
        #[cfg(not(feature = "leveldb"))]
        {
            (self.app == AppName::Leveldb).then(|| format!("--app leveldb: {NO_LEVELDB}"))
        }
    }

    /// Sets the application up; `measure` = time GET and SCAN first (the workload's service
    /// times become this machine's instead of the thesis's).
    pub(crate) fn start(&self, synthetic: WorkloadName, measure: bool) -> Result<ServedApp, String> {
        match self.app {
            AppName::Memcached => {
                Err("--app memcached runs under `synergy serve` only (TCP; it has no synthetic load \
                 generator here yet)"
                    .into())
            }
            AppName::Synthetic => {
                let workload = Workload::named(synthetic);
                Ok(ServedApp {
                    handler: synergy_apps::synthetic::handler(workload.types.clone()),
                    workload,
                    measured: None,
                })
            }
            AppName::Echo => Ok(ServedApp {
                handler: synergy_apps::echo::handler(),
                workload: Workload::named(synthetic),
                measured: None,
            }),
            AppName::Leveldb => self.start_leveldb(measure),
        }
    }

    #[cfg(feature = "leveldb")]
    fn start_leveldb(&self, measure: bool) -> Result<ServedApp, String> {
        use synergy_apps::leveldb;
        if !(1..=1_000_000).contains(&self.leveldb_entries) {
            return Err(format!("--leveldb-entries must be between 1 and 1000000, got {}", self.leveldb_entries));
        }
        let dir = self.leveldb_dir.clone().unwrap_or_else(leveldb::default_dir);
        if leveldb::on_tmpfs(&dir) == Some(false) {
            eprintln!(
                "synergy: warning: {} is not on tmpfs; disk I/O will be part of every measurement",
                dir.display()
            );
        }
        let store = std::sync::Arc::new(leveldb::Store::create(&dir, self.leveldb_entries).map_err(|e| e.to_string())?);
        use synergy_eval::workload::{THESIS_LEVELDB_GET_NS, THESIS_LEVELDB_SCAN_NS};
        let (mut get_ns, mut scan_ns) = (THESIS_LEVELDB_GET_NS, THESIS_LEVELDB_SCAN_NS);
        let mut measured = None;
        if measure {
            let t = leveldb::measure_service_times(&store, self.leveldb_entries, 200_000, 2_000, 7)
                .map_err(|e| e.to_string())?;
            eprintln!(
                "LevelDB {} with {} entries: GET {:.2} µs, SCAN {:.1} µs mean service time (thesis: 0.92 µs, 94 µs)",
                t.leveldb_version,
                t.entries,
                t.get.mean_ns / 1000.0,
                t.scan.mean_ns / 1000.0
            );
            (get_ns, scan_ns) = (t.get.mean_ns.round() as u64, t.scan.mean_ns.round() as u64);
            measured = Some(serde_json::to_value(&t).map_err(|e| e.to_string())?);
        }
        let workload = Workload::leveldb(get_ns.max(1), scan_ns.max(1), self.leveldb_entries);
        Ok(ServedApp { workload, handler: leveldb::handler(store), measured })
    }

    #[cfg(not(feature = "leveldb"))]
    fn start_leveldb(&self, _measure: bool) -> Result<ServedApp, String> {
        Err(format!("--app leveldb: {NO_LEVELDB}"))
    }
}

#[derive(clap::Args)]
pub(crate) struct BenchLeveldbArgs {
    /// Where the store goes [default: /dev/shm/synergy-leveldb-<pid>].
    #[arg(long)]
    leveldb_dir: Option<PathBuf>,
    #[arg(long, default_value_t = synergy_eval::workload::LEVELDB_ENTRIES)]
    leveldb_entries: u32,
    /// GETs to time (the thesis averaged one million of each type).
    #[arg(long, default_value_t = 1_000_000)]
    gets: usize,
    #[arg(long, default_value_t = 20_000)]
    scans: usize,
    #[command(flatten)]
    output: crate::output::OutputArgs,
}

#[cfg(feature = "leveldb")]
pub(crate) fn bench_leveldb(args: BenchLeveldbArgs) -> ExitCode {
    use synergy_apps::leveldb;
    use synergy_eval::plot::{bar_chart, BarGroup};
    crate::output::begin(&args.output);
    if args.gets == 0 || args.scans == 0 || args.leveldb_entries == 0 {
        return usage_error("--gets, --scans and --leveldb-entries must be at least 1");
    }
    let dir = args.leveldb_dir.clone().unwrap_or_else(leveldb::default_dir);
    let store = match leveldb::Store::create(&dir, args.leveldb_entries) {
        Ok(s) => s,
        Err(e) => return run_failed(e),
    };
    let t = match leveldb::measure_service_times(&store, args.leveldb_entries, args.gets, args.scans, 7) {
        Ok(t) => t,
        Err(e) => return run_failed(e),
    };
    drop(store);
    crate::table!(
        "LevelDB {} on {} ({} entries, {} on tmpfs):",
        t.leveldb_version,
        dir.display(),
        t.entries,
        match leveldb::on_tmpfs(&dir) {
            Some(true) => "is",
            Some(false) => "NOT",
            None => "unknown if",
        }
    );
    crate::table!(
        "{:>6} {:>9} {:>10} {:>10} {:>10} {:>12}",
        "type",
        "count",
        "mean µs",
        "p50 µs",
        "p99 µs",
        "thesis µs"
    );
    for (name, s, thesis) in [("GET", &t.get, t.thesis_get_ns), ("SCAN", &t.scan, t.thesis_scan_ns)] {
        crate::table!(
            "{name:>6} {:>9} {:>10.3} {:>10.3} {:>10.3} {:>12.2}",
            s.count,
            s.mean_ns / 1e3,
            s.p50_ns as f64 / 1e3,
            s.p99_ns as f64 / 1e3,
            thesis / 1e3
        );
    }
    crate::table!(
        "SCAN/GET ratio: {:.0} here, {:.0} in the thesis",
        t.scan.mean_ns / t.get.mean_ns,
        t.thesis_scan_ns / t.thesis_get_ns
    );
    let mut table =
        synergy_eval::csv::CsvTable::new(&["type", "count", "mean_ns", "p50_ns", "p99_ns", "thesis_mean_ns"]);
    for (name, x, thesis) in [("GET", &t.get, t.thesis_get_ns), ("SCAN", &t.scan, t.thesis_scan_ns)] {
        table.row([
            name.to_string(),
            x.count.to_string(),
            format!("{:.1}", x.mean_ns),
            x.p50_ns.to_string(),
            x.p99_ns.to_string(),
            thesis.to_string(),
        ]);
    }
    let csv = table.finish();
    let groups = vec![
        BarGroup {
            label: "GET".into(),
            bars: vec![("this machine".into(), t.get.mean_ns / 1e3), ("thesis".into(), t.thesis_get_ns / 1e3)],
        },
        BarGroup {
            label: "SCAN".into(),
            bars: vec![("this machine".into(), t.scan.mean_ns / 1e3), ("thesis".into(), t.thesis_scan_ns / 1e3)],
        },
    ];
    let svg = bar_chart("LevelDB mean service time (log scale)", "µs", &groups, true);
    crate::output::finish(
        &args.output,
        crate::output::Results { name: "leveldb-service", value: &t, csv, svg: Some(svg) },
    )
}

#[cfg(not(feature = "leveldb"))]
pub(crate) fn bench_leveldb(_args: BenchLeveldbArgs) -> ExitCode {
    unavailable(NO_LEVELDB)
}
