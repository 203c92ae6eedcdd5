//! `synergy validate`: whether this machine can run every preemption mode, and how fast each is.
//!
//! It checks the CPU (UINTR, x2APIC, invariant TSC), the running kernel's configuration and its
//! CR4-shadow export, finds synergy's modules (a directory, or installed ones), and, as root,
//! runs the kernel modules' own tests (the QEMU bench's guest scripts, which load and unload the
//! modules themselves), loads the modules, runs the interrupt-path microbenchmark over every mode
//! the machine supports side by side with the thesis's Table 5.1, and the demo once per mode.
//! Everything goes into one report (report.md, report.json, and the microbenchmark's
//! JSON/CSV/SVG) in `--out`; the exit status is 1 when anything is missing or failed, with the
//! list on stderr and at the top of the report. `scripts/validate-hardware.sh` builds what this
//! needs and runs it.

mod checks;
mod report;

use checks::{Check, CpuFacts, Status};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

#[derive(clap::Args)]
pub struct ValidateArgs {
    /// Where the report goes (created if needed).
    #[arg(long, value_name = "DIR", default_value = "target/validate")]
    out: PathBuf,
    /// Directory holding kmod_ipi.ko and kmod_uintr.ko built for the running kernel. Default:
    /// the installed modules (`modinfo kmod_ipi`, from the synergy-modules package).
    #[arg(long, value_name = "DIR")]
    modules: Option<PathBuf>,
    /// The QEMU bench's guest scripts (scripts/kernel/guest), run as the modules' tests.
    #[arg(long, value_name = "DIR")]
    guest_scripts: Option<PathBuf>,
    /// Directory put first on the scripts' PATH: `synergy`, `synergy-ktest`,
    /// `synergy-microbench-emit` and the runtime's `synergy-test-*` executables.
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
    /// Interrupts per mode in the microbenchmark.
    #[arg(long, default_value_t = 200_000)]
    runs: usize,
    /// Length of each mode's demo.
    #[arg(long, default_value_t = 1000)]
    demo_ms: u64,
    /// Also run the CPU-hotplug test (takes CPUs offline and back: not on a server in service).
    #[arg(long)]
    cpu_hotplug: bool,
}

/// Facts about the host that go at the top of the report.
#[derive(Debug, serde::Serialize)]
pub struct Host {
    pub cpu_model: String,
    pub family_model: String,
    pub cpus: usize,
    pub kernel: String,
    pub platform: String,
    pub cpu: CpuFacts,
}

/// A command run as a step, with its outcome.
#[derive(Debug, serde::Serialize)]
pub struct Step {
    pub id: String,
    pub command: String,
    pub status: Status,
    pub seconds: f64,
    /// The end of its output (all of it for the microbenchmark's table).
    pub output: String,
}

pub fn run(args: ValidateArgs) -> ExitCode {
    if args.runs == 0 || args.demo_ms == 0 {
        return crate::usage_error("--runs and --demo-ms must be at least 1");
    }
    if let Err(e) = std::fs::create_dir_all(&args.out) {
        return crate::run_failed(format!("cannot create {}: {e}", args.out.display()));
    }
    let self_exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => return crate::run_failed(format!("cannot find this executable: {e}")),
    };
    let cpu = CpuFacts::read();
    let host = host_facts(cpu);
    let mut checks = checks::cpu_checks(&cpu);
    let (config, config_source) = running_kernel_config(&host.kernel);
    checks.extend(checks::kernel_config_checks(config.as_deref(), &config_source));
    let symvers_path = format!("/lib/modules/{}/build/Module.symvers", host.kernel);
    checks.push(checks::cr4_export_check(std::fs::read_to_string(&symvers_path).ok().as_deref(), &symvers_path));
    let root = is_root();
    checks.push(if root {
        Check::new("privileges.root", Status::Pass, "running as root: modules can be loaded")
    } else {
        Check::new(
            "privileges.root",
            Status::Missing,
            "not root: the modules cannot be loaded or tested (run with sudo)",
        )
    });
    let modules = find_modules(args.modules.as_deref(), &host.kernel);
    checks.push(match &modules {
        Ok((dir, how)) => Check::new("modules.found", Status::Pass, format!("{} ({how})", dir.display())),
        Err(why) => Check::new("modules.found", Status::Missing, why.clone()),
    });
    let modules = modules.ok().map(|(dir, _)| dir);

    let mut steps = Vec::new();
    let can_load = root && modules.is_some();
    let blocked = |what: &str| -> String {
        let mut why = Vec::new();
        if !root {
            why.push("root");
        }
        if modules.is_none() {
            why.push("synergy's modules for this kernel");
        }
        format!("{what} needs {}", why.join(" and "))
    };
    // The modules' own tests load and unload them, so they run first, with nothing loaded.
    let mut scripts = vec!["10-kmod-ipi-load.sh", "20-kmod-ipi-abi.sh", "50-kmod-uintr.sh", "70-ioctl-fuzz.sh"];
    if args.cpu_hotplug {
        scripts.push("60-cpu-hotplug.sh");
    }
    // The modes (so the demo runs) are known once the modules loaded: up to three.
    let mut progress = synergy_eval::progress::task("synergy validate", (scripts.len() + 4) as u64, "steps");
    for script in scripts {
        let id = format!("ktest.{}", script.trim_end_matches(".sh"));
        let (Some(dir), Some(mods)) = (args.guest_scripts.as_deref(), modules.as_deref()) else {
            let why = if args.guest_scripts.is_none() { "--guest-scripts".to_string() } else { blocked("it") };
            checks.push(Check::new(id, Status::NotRun, format!("not run: needs {why}")));
            continue;
        };
        if !can_load {
            checks.push(Check::new(id, Status::NotRun, format!("not run: {}", blocked("loading a module"))));
            continue;
        }
        let mut cmd = Command::new("sh");
        cmd.arg("-e").arg(dir.join(script)).env("SYNERGY_MODULES", mods);
        if let Some(bin) = &args.bin_dir {
            cmd.env("PATH", prepend_path(bin));
        }
        let step = run_step(&id, cmd, &mut progress);
        checks.push(Check::new(&id, step.status, format!("{} in {:.0} s", step.status.label(), step.seconds)));
        steps.push(step);
    }

    // Load the modules for the runtime's modes; a mode is measured only where its module loaded
    // and (uintr) the CPU has the feature.
    let mut modes = vec!["signal"];
    for (module, mode) in [("kmod_ipi", "ipi"), ("kmod_uintr", "uintr")] {
        let id = format!("modules.load.{module}");
        let Some(dir) = modules.as_deref().filter(|_| can_load) else {
            checks.push(Check::new(id, Status::NotRun, format!("not run: {}", blocked("loading it"))));
            continue;
        };
        match load_module(module, dir) {
            Ok(note) => {
                let usable = mode != "uintr" || cpu.uintr;
                checks.push(Check::new(&id, Status::Pass, note));
                if usable {
                    modes.push(mode);
                }
            }
            Err(e) => checks.push(Check::new(&id, Status::Fail, e)),
        }
    }

    progress.set_total((steps.len() + 1 + modes.len()) as u64);
    let mut mb = Command::new(&self_exe);
    mb.args(["bench", "interrupt", "--preempt", &modes.join(","), "--runs", &args.runs.to_string(), "--out"])
        .arg(&args.out)
        .args(["--name", "microbench"]);
    let step = run_step("microbench", mb, &mut progress);
    checks.push(Check::new(
        "microbench",
        step.status,
        format!("modes {} ({} runs each) in {:.0} s", modes.join(", "), args.runs, step.seconds),
    ));
    steps.push(step);
    for mode in &modes {
        let id = format!("demo.{mode}");
        let mut demo = Command::new(&self_exe);
        demo.args(["run", "--preempt", mode, "--duration-ms", &args.demo_ms.to_string(), "--out"])
            .arg(&args.out)
            .args(["--name", &format!("demo-{mode}")]);
        let step = run_step(&id, demo, &mut progress);
        checks.push(Check::new(&id, step.status, format!("{} in {:.0} s", step.status.label(), step.seconds)));
        steps.push(step);
    }
    for module in ["kmod_uintr", "kmod_ipi"] {
        if is_loaded(module) {
            let _ = Command::new("rmmod").arg(module).status();
        }
    }

    let report = report::Report::new(host, checks, steps, &args.out.join("microbench.json"));
    if let Err(e) = report.write(&args.out) {
        return crate::run_failed(format!("cannot write the report in {}: {e}", args.out.display()));
    }
    let problems = report.problems();
    println!("report: {}", args.out.join("report.md").display());
    if problems.is_empty() {
        println!("every check passed");
        ExitCode::SUCCESS
    } else {
        eprintln!("synergy validate: {} problem(s):", problems.len());
        for c in problems {
            eprintln!("  {} {}: {}", c.status.label(), c.id, c.detail);
        }
        ExitCode::from(1)
    }
}

fn host_facts(cpu: CpuFacts) -> Host {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        cpuinfo
            .lines()
            .find(|l| l.split(':').next().is_some_and(|k| k.trim() == name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown".into())
    };
    Host {
        cpu_model: field("model name"),
        family_model: format!("family {} model {} stepping {}", field("cpu family"), field("model"), field("stepping")),
        cpus: synergy::cpu::allowed_cpus().len(),
        kernel: synergy::cpu::kernel_release(),
        platform: crate::bench::interrupt::platform().0,
        cpu,
    }
}

/// The running kernel's configuration and where it came from.
fn running_kernel_config(release: &str) -> (Option<String>, String) {
    let boot = format!("/boot/config-{release}");
    if let Ok(s) = std::fs::read_to_string(&boot) {
        return (Some(s), boot);
    }
    if Path::new("/proc/config.gz").exists() {
        if let Ok(o) = Command::new("zcat").arg("/proc/config.gz").output() {
            if o.status.success() {
                return (Some(String::from_utf8_lossy(&o.stdout).into_owned()), "/proc/config.gz".into());
            }
        }
    }
    (None, format!("{boot} or /proc/config.gz"))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The directory with both modules, and how it was found.
fn find_modules(dir: Option<&Path>, release: &str) -> Result<(PathBuf, String), String> {
    let both = |d: &Path| ["kmod_ipi.ko", "kmod_uintr.ko"].iter().all(|m| d.join(m).is_file());
    if let Some(d) = dir {
        return if both(d) {
            Ok((d.to_path_buf(), "--modules".into()))
        } else {
            Err(format!("--modules {}: no kmod_ipi.ko and kmod_uintr.ko there", d.display()))
        };
    }
    let installed = Command::new("modinfo").args(["-k", release, "-n", "kmod_ipi"]).output();
    if let Ok(o) = installed {
        let path = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
        if o.status.success() {
            if let Some(d) = path.parent().filter(|d| both(d)) {
                return Ok((d.to_path_buf(), format!("installed for {release}")));
            }
        }
    }
    Err(format!(
        "no synergy modules for {release}: install synergy-modules-{release} (scripts/kernel/package.sh) or \
         build them against this kernel's headers (scripts/validate-hardware.sh does when \
         /lib/modules/{release}/build exists)"
    ))
}

fn is_loaded(module: &str) -> bool {
    std::fs::read_to_string("/proc/modules").is_ok_and(|m| m.lines().any(|l| l.split(' ').next() == Some(module)))
}

/// insmod, then what the module said about itself in the kernel log.
fn load_module(module: &str, dir: &Path) -> Result<String, String> {
    if is_loaded(module) {
        return Ok("already loaded".into());
    }
    let ko = dir.join(format!("{module}.ko"));
    let o = Command::new("insmod").arg(&ko).output().map_err(|e| format!("cannot run insmod: {e}"))?;
    if !o.status.success() {
        let dmesg = Command::new("dmesg").output().map(|d| tail(&d.stdout, 3)).unwrap_or_default();
        return Err(format!(
            "insmod {}: {}; kernel log: {dmesg}",
            ko.display(),
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    let said = Command::new("dmesg")
        .output()
        .ok()
        .and_then(|d| {
            String::from_utf8_lossy(&d.stdout)
                .lines()
                .rev()
                .find(|l| l.contains(&format!("{module}:")))
                .map(str::to_string)
        })
        .unwrap_or_else(|| "loaded".into());
    Ok(said.trim().to_string())
}

fn prepend_path(dir: &Path) -> String {
    let rest = std::env::var("PATH").unwrap_or_default();
    format!("{}:{rest}", dir.display())
}

fn tail(bytes: &[u8], lines: usize) -> String {
    let s = String::from_utf8_lossy(bytes);
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join(" | ")
}

fn run_step(id: &str, mut cmd: Command, progress: &mut synergy_eval::progress::Task) -> Step {
    let command = format!("{cmd:?}");
    synergy_eval::progress::note(&format!("[validate] {id}: {command}"));
    let start = std::time::Instant::now();
    let (status, output) = match cmd.output() {
        Ok(o) => {
            let mut out = String::from_utf8_lossy(&o.stdout).into_owned();
            out.push_str(&String::from_utf8_lossy(&o.stderr));
            (if o.status.success() { Status::Pass } else { Status::Fail }, out)
        }
        Err(e) => (Status::Fail, format!("cannot run: {e}")),
    };
    // The microbenchmark's whole table; the last 40 lines of anything else.
    let output = if id == "microbench" { output } else { tail(output.as_bytes(), 40).replace(" | ", "\n") };
    progress.inc();
    Step { id: id.into(), command, status, seconds: start.elapsed().as_secs_f64(), output }
}
