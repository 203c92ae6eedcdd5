//! The validation report: report.json (everything), report.md (for a person: the problems first,
//! then every check, thesis Table 5.1 beside the measured one, and each step's output). The
//! microbenchmark's own JSON/CSV/SVG sit beside them.

use super::checks::Check;
use super::{Host, Step};
use crate::bench::interrupt::THESIS_TABLE_5_1;
use serde::Serialize;
use std::fmt::Write;
use std::path::Path;

#[derive(Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub host: Host,
    /// The ids of the checks that are missing or failed: empty when the machine is ready.
    pub problems: Vec<String>,
    pub checks: Vec<Check>,
    pub steps: Vec<Step>,
    /// The microbenchmark's results (its JSON), when it ran.
    pub microbench: Option<serde_json::Value>,
}

const PHASES: [&str; 4] = ["send", "propagation", "receive", "return"];

impl Report {
    pub fn new(host: Host, checks: Vec<Check>, steps: Vec<Step>, microbench_json: &Path) -> Report {
        let microbench = std::fs::read_to_string(microbench_json)
            .ok()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok());
        let problems = checks.iter().filter(|c| c.status.is_problem()).map(|c| c.id.clone()).collect();
        Report { schema: "synergy-validate/1", host, problems, checks, steps, microbench }
    }

    pub fn problems(&self) -> Vec<&Check> {
        self.checks.iter().filter(|c| c.status.is_problem()).collect()
    }

    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let json = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(dir.join("report.json"), json + "\n")?;
        std::fs::write(dir.join("report.md"), self.markdown())
    }

    /// Measured [p50, p99.9] of `phase` for `method`, from the microbenchmark's JSON.
    fn measured(&self, method: &str, phase: &str) -> Option<(f64, f64)> {
        let methods = self.microbench.as_ref()?.get("methods")?.as_array()?;
        let m = methods.iter().find(|m| m.get("method").and_then(|v| v.as_str()) == Some(method))?;
        let p = m.get("phases")?.get(phase)?;
        Some((p.get("p50_ns")?.as_f64()?, p.get("p999_ns")?.as_f64()?))
    }

    pub fn markdown(&self) -> String {
        let h = &self.host;
        let mut s = String::new();
        let _ = writeln!(s, "# synergy hardware validation\n");
        let _ = writeln!(
            s,
            "- CPU: {} ({}), {} CPUs usable, {}\n- kernel: {}\n- UINTR: {}, x2APIC: {}, invariant TSC: {}\n",
            h.cpu_model,
            h.family_model,
            h.cpus,
            h.platform,
            h.kernel,
            yes_no(h.cpu.uintr),
            yes_no(h.cpu.x2apic),
            yes_no(h.cpu.invariant_tsc)
        );
        let problems = self.problems();
        if problems.is_empty() {
            let _ = writeln!(s, "**Every check passed.**\n");
        } else {
            let _ = writeln!(s, "## Missing or failed ({})\n", problems.len());
            for c in problems {
                let _ = writeln!(s, "- **{}** `{}`: {}", c.status.label(), c.id, c.detail);
            }
            s.push('\n');
        }
        let _ = writeln!(s, "## Checks\n\n| check | status | detail |\n|---|---|---|");
        for c in &self.checks {
            let _ = writeln!(s, "| `{}` | {} | {} |", c.id, c.status.label(), c.detail.replace('|', "\\|"));
        }
        let _ = writeln!(
            s,
            "\n## Interrupt paths beside thesis Table 5.1\n\nns, p50 / p99.9. Thesis: Xeon Gold 6438Y+, Linux 5.15, \
             500k runs. Measured: this machine (microbench.json, .csv, .svg).\n"
        );
        let _ = writeln!(s, "| method | source | send | propagation | receive | return |\n|---|---|---|---|---|---|");
        for t in THESIS_TABLE_5_1.iter() {
            let thesis = [t.send, t.propagation, t.receive, t.ret];
            let cells: Vec<String> = PHASES
                .iter()
                .map(|p| {
                    self.measured(t.method, p)
                        .map_or_else(|| "not measured".into(), |(a, b)| format!("{a:.0} / {b:.0}"))
                })
                .collect();
            let _ = writeln!(s, "| {} | measured | {} |", t.method, cells.join(" | "));
            let ref_cells: Vec<String> = thesis.iter().map(|v| format!("{} / {}", v[0], v[1])).collect();
            let _ = writeln!(s, "| {} | thesis | {} |", t.method, ref_cells.join(" | "));
        }
        if self.microbench.as_ref().and_then(|m| m.get("emulated")).and_then(|v| v.as_bool()) == Some(true) {
            let _ = writeln!(s, "\nUnder software emulation: the measured numbers only show that the paths work.");
        }
        let _ = writeln!(s, "\n## Steps\n");
        for st in &self.steps {
            let _ = writeln!(
                s,
                "### {} ({}, {:.1} s)\n\n`{}`\n\n```\n{}\n```\n",
                st.id,
                st.status.label(),
                st.seconds,
                st.command,
                st.output.trim_end()
            );
        }
        s
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

#[cfg(test)]
mod tests {
    use super::super::checks::{CpuFacts, Status};
    use super::*;

    fn host() -> Host {
        Host {
            cpu_model: "test".into(),
            family_model: "family 6 model 143 stepping 8".into(),
            cpus: 4,
            kernel: "7.3.4-synergy".into(),
            platform: "bare metal".into(),
            cpu: CpuFacts { uintr: true, x2apic: true, invariant_tsc: true, hypervisor: false },
        }
    }

    #[test]
    fn problems_lead_the_report_and_unmeasured_modes_say_so() {
        let dir = std::env::temp_dir().join(format!("synergy-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mb = dir.join("microbench.json");
        std::fs::write(
            &mb,
            r#"{"emulated":false,"methods":[{"method":"signal","phases":{"send":{"p50_ns":700.0,"p999_ns":900.0},
               "propagation":{"p50_ns":2000.0,"p999_ns":2500.0},"receive":{"p50_ns":1400.0,"p999_ns":3000.0},
               "return":{"p50_ns":600.0,"p999_ns":650.0}}}]}"#,
        )
        .unwrap();
        let checks = vec![
            Check::new("cpu.uintr", Status::Pass, "yes"),
            Check::new("modules.load.kmod_uintr", Status::Fail, "insmod: Unknown symbol"),
        ];
        let r = Report::new(host(), checks, vec![], &mb);
        assert_eq!(r.problems, ["modules.load.kmod_uintr"]);
        let md = r.markdown();
        let problems_at = md.find("## Missing or failed (1)").expect("a problems section");
        assert!(problems_at < md.find("## Checks").unwrap());
        assert!(md.contains("| signal | measured | 700 / 900 | 2000 / 2500 | 1400 / 3000 | 600 / 650 |"), "{md}");
        assert!(md.contains("| ipi | measured | not measured |"), "{md}");
        assert!(md.contains("| uintr | thesis | 171 / 236 | 671 / 1354 | 464 / 1534 | 45 / 105 |"), "{md}");
        r.write(&dir).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
        assert_eq!(json["problems"][0], "modules.load.kmod_uintr");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
