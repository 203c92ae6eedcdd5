//! `synergy bench xsave`: the preemption entry's extended-state save + restore with XSAVE (every
//! enabled component) and with XSAVEC (only those in use), for interrupted code with SSE, AVX2 or
//! AVX-512 state live: bytes written and time per pair, alternating rounds (issue 23).

use serde::Serialize;
use std::fmt::Write;
use synergy::bench::xsave::{measure, LiveState};
use synergy::cpu::XsaveFormat;
use synergy_eval::plot::{bar_chart, BarGroup};

#[derive(Debug, Clone, Serialize)]
pub struct XsaveRow {
    pub format: &'static str,
    pub live: &'static str,
    pub saved_components: String,
    pub bytes_written: usize,
    /// Median over the rounds.
    pub ns_per_pair: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct XsaveBench {
    pub cpu_model: String,
    /// XCR0: the components the OS enabled.
    pub enabled_components: String,
    pub rounds: usize,
    pub pairs_per_round: u64,
    pub rows: Vec<XsaveRow>,
}

fn format_name(f: XsaveFormat) -> &'static str {
    match f {
        XsaveFormat::Standard => "xsave",
        XsaveFormat::Compacted => "xsavec",
    }
}

pub fn run(rounds: usize, pairs: u64) -> XsaveBench {
    let cells: Vec<(XsaveFormat, LiveState)> = [XsaveFormat::Standard, XsaveFormat::Compacted]
        .iter()
        .flat_map(|&f| LiveState::ALL.iter().map(move |&l| (f, l)))
        .collect();
    let mut samples: Vec<Vec<synergy::bench::xsave::SaveCost>> = vec![Vec::new(); cells.len()];
    let mut progress = synergy_eval::progress::task("synergy bench xsave", (rounds) as u64, "rounds");
    for _ in 0..rounds {
        for (i, &(f, l)) in cells.iter().enumerate() {
            if let Some(c) = measure(f, l, pairs) {
                samples[i].push(c);
            }
        }
        progress.inc();
    }
    let rows = samples
        .into_iter()
        .filter(|s| !s.is_empty())
        .map(|mut s| {
            s.sort_by(|a, b| a.ns_per_pair.total_cmp(&b.ns_per_pair));
            let m = &s[s.len() / 2];
            XsaveRow {
                format: format_name(m.format),
                live: m.live.name(),
                saved_components: format!("{:#x}", m.saved_components),
                bytes_written: m.bytes_written,
                ns_per_pair: m.ns_per_pair,
            }
        })
        .collect();
    XsaveBench {
        cpu_model: synergy::cpu::model_name(),
        enabled_components: format!("{:#x}", synergy::cpu::enabled_components()),
        rounds,
        pairs_per_round: pairs,
        rows,
    }
}

pub fn table(b: &XsaveBench) -> String {
    let mut s = format!(
        "extended-state save + restore ({}, XCR0 {}), median of {} rounds × {} pairs:\n",
        b.cpu_model, b.enabled_components, b.rounds, b.pairs_per_round
    );
    let _ = writeln!(s, "  {:<7} {:<7} {:>10} {:>8} {:>10}", "format", "live", "XSTATE_BV", "bytes", "ns/pair");
    for r in &b.rows {
        let _ = writeln!(
            s,
            "  {:<7} {:<7} {:>10} {:>8} {:>10.1}",
            r.format, r.live, r.saved_components, r.bytes_written, r.ns_per_pair
        );
    }
    s
}

pub fn csv(b: &XsaveBench) -> String {
    let mut table = synergy_eval::csv::CsvTable::new(&[
        "cpu_model",
        "format",
        "live",
        "saved_components",
        "bytes_written",
        "ns_per_pair",
    ]);
    for r in &b.rows {
        table.row([
            b.cpu_model.to_string(),
            r.format.to_string(),
            r.live.to_string(),
            r.saved_components.to_string(),
            r.bytes_written.to_string(),
            format!("{:.2}", r.ns_per_pair),
        ]);
    }
    table.finish()
}

pub fn svg(b: &XsaveBench) -> String {
    let groups: Vec<BarGroup> = LiveState::ALL
        .iter()
        .map(|l| BarGroup {
            label: format!("{} live", l.name()),
            bars: b
                .rows
                .iter()
                .filter(|r| r.live == l.name())
                .map(|r| (format!("{} ({} B)", r.format, r.bytes_written), r.ns_per_pair))
                .collect(),
        })
        .collect();
    bar_chart(
        &format!("Preemption entry: extended-state save + restore ({})", b.cpu_model),
        "ns per save + restore",
        &groups,
        false,
    )
}
