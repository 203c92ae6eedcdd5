//! Presentation of `synergy bench interrupt` results: the text table, CSV and the SVG bar chart.

use super::interrupt::{MicrobenchResult, THESIS_TABLE_5_1};
use super::phases::Percentiles;
use std::fmt::Write;
use synergy_eval::plot::{bar_chart, BarGroup};

const PHASES: [&str; 4] = ["send", "propagation", "receive", "return"];

fn phase_values(r: &super::interrupt::MethodResult) -> [Percentiles; 4] {
    let p = &r.phases;
    [p.send, p.propagation, p.receive, p.ret]
}

/// The table printed by the command: ours, the baseline, the context switch and the thesis's rows.
pub fn table(r: &MicrobenchResult) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "interrupt paths, ns (p50 / p99.9) over {} runs each; sender CPU {}, receiver CPU {}; TSC {:.3} GHz; {}",
        r.runs_per_method,
        r.sender_cpu,
        r.receiver_cpu,
        1.0 / r.ns_per_tick,
        r.platform
    );
    if r.emulated {
        let _ = writeln!(s, "NOTE: running under software emulation ({}): these numbers only show that the path works; they say nothing about hardware speed (an emulator's clocks need not even agree between its CPUs)", r.platform);
    }
    let _ = writeln!(
        s,
        "{:<22} {:>15} {:>15} {:>15} {:>15} {:>15} {:>7}",
        "method", "send", "propagation", "receive", "return", "total rt3-rt0", "resent"
    );
    for m in &r.methods {
        let cells: Vec<String> =
            phase_values(m).iter().map(|p| format!("{:.0} / {:.0}", p.p50_ns, p.p999_ns)).collect();
        let total = format!("{:.0} / {:.0}", m.phases.total.p50_ns, m.phases.total.p999_ns);
        let _ = writeln!(
            s,
            "{:<22} {:>15} {:>15} {:>15} {:>15} {:>15} {:>7}",
            m.method, cells[0], cells[1], cells[2], cells[3], total, m.resent
        );
    }
    let _ = writeln!(
        s,
        "{:<22} {:>15}   (one green-thread switch, batches of 64 round trips)",
        "context switch",
        format!("{:.1} / {:.1}", r.context_switch.p50_ns, r.context_switch.p999_ns)
    );
    for m in &r.methods {
        if let Some(ratio) = m.ratio_to_baseline_p50 {
            let _ = writeln!(
                s,
                "synergy {} path / bare tgkill+sigreturn beside it, whole interruption (rt3-rt0) p50: {ratio:.2}x",
                m.method
            );
        }
    }
    if r.blocks > 1 {
        let _ = writeln!(s, "(the paths took turns in {} blocks; the baseline row pools every block)", r.blocks);
    }
    let _ = writeln!(s, "reference, thesis Table 5.1 (Xeon Gold 6438Y+, Linux 5.15):");
    for t in THESIS_TABLE_5_1.iter() {
        let cells: Vec<String> =
            [t.send, t.propagation, t.receive, t.ret].iter().map(|v| format!("{} / {}", v[0], v[1])).collect();
        let _ = writeln!(s, "  {:<20} {:>15} {:>15} {:>15} {:>15}", t.method, cells[0], cells[1], cells[2], cells[3]);
    }
    s
}

/// One row per (source, method, phase): source is "measured" or "thesis".
pub fn csv(r: &MicrobenchResult) -> String {
    let mut table = synergy_eval::csv::CsvTable::new(&["source", "method", "phase", "p50_ns", "p999_ns", "runs"]);
    for m in &r.methods {
        for (name, p) in PHASES.iter().zip(phase_values(m)) {
            table.row([
                String::from("measured"),
                m.method.to_string(),
                name.to_string(),
                format!("{:.1}", p.p50_ns),
                format!("{:.1}", p.p999_ns),
                m.phases.runs.to_string(),
            ]);
        }
        table.row([
            String::from("measured"),
            m.method.to_string(),
            String::from("total"),
            format!("{:.1}", m.phases.total.p50_ns),
            format!("{:.1}", m.phases.total.p999_ns),
            m.phases.runs.to_string(),
        ]);
    }
    table.row([
        String::from("measured"),
        String::from("context-switch"),
        String::from("switch"),
        format!("{:.2}", r.context_switch.p50_ns),
        format!("{:.2}", r.context_switch.p999_ns),
        String::new(),
    ]);
    for t in THESIS_TABLE_5_1.iter() {
        for (name, v) in PHASES.iter().zip([t.send, t.propagation, t.receive, t.ret]) {
            table.row([
                String::from("thesis"),
                t.method.to_string(),
                name.to_string(),
                v[0].to_string(),
                v[1].to_string(),
                String::from("500000"),
            ]);
        }
    }
    table.finish()
}

/// Bar chart of the p50 of each phase: our measured methods next to the thesis's rows.
pub fn svg(r: &MicrobenchResult) -> String {
    let groups: Vec<BarGroup> = PHASES
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let mut bars: Vec<(String, f64)> = r
                .methods
                .iter()
                .map(|m| (format!("{} (here)", m.method), phase_values(m)[i].p50_ns.max(1.0)))
                .collect();
            for t in THESIS_TABLE_5_1.iter() {
                let v = [t.send, t.propagation, t.receive, t.ret][i][0];
                bars.push((format!("{} (thesis)", t.method), f64::from(v)));
            }
            BarGroup { label: (*name).into(), bars }
        })
        .collect();
    let title = if r.emulated {
        format!("Interrupt path phases, p50 (measured under software emulation, {}: functional check only)", r.platform)
    } else {
        format!("Interrupt path phases, p50 ({})", r.platform)
    };
    bar_chart(&title, "ns (log scale)", &groups, true)
}
