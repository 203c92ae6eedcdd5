//! The `synergy` binary: bad input gives a clear error and exit status 2; the demo and the
//! context-switch benchmark run and report.

mod common;

use std::process::{Command, Output};

fn synergy(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_synergy")).args(args).output().expect("run synergy")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn bad_values_are_rejected_with_a_clear_error() {
    let cases: &[(&[&str], &str)] = &[
        (&["demo", "--workers", "0"], "workers must be between 1"),
        (&["demo", "--quantum-factor", "-1"], "quantum_factor must be a positive number"),
        (&["demo", "--load", "0"], "--load must be in (0, 2]"),
        (&["demo", "--timer-core", "4096"], "timer core CPU 4096 is not available"),
        (&["demo", "--preempt", "smoke"], "invalid value 'smoke'"),
        (&["demo", "--preempt", "ipi"], "insmod kmod_ipi.ko"),
        (&["demo", "--preempt", "uintr"], "kmod_uintr"),
        (&["demo", "--workers", "many"], "invalid value 'many'"),
        (&["demo", "--config", "/nonexistent.toml"], "cannot read config file /nonexistent.toml"),
        (&["bench", "ctx", "--rounds", "0"], "--rounds and --round-trips must be at least 1"),
    ];
    for (args, needle) in cases {
        let o = synergy(args);
        assert_eq!(o.status.code(), Some(2), "{args:?} must fail with status 2");
        assert!(stderr(&o).contains(needle), "{args:?}: stderr {:?} should contain {needle:?}", stderr(&o));
    }
}

#[test]
fn config_file_errors_name_the_file_and_key() {
    let dir = std::env::temp_dir().join(format!("synergy-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "workers = 1\nquantum_factr = 3.0\n").unwrap();
    let o = synergy(&["config", "--config", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("bad.toml") && stderr(&o).contains("unknown field `quantum_factr`"), "{}", stderr(&o));
    let good = dir.join("good.toml");
    std::fs::write(&good, "workers = 1\nquantum_factor = 3.5\nthresh_wqd_us = 15\n").unwrap();
    let o = synergy(&["config", "--config", good.to_str().unwrap(), "--steal-threshold", "4"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("quantum_factor: 3.5") && out.contains("thresh_wqd_us: 15") && out.contains("steal_threshold: 4"), "{out}");
}

#[test]
fn demo_prints_a_latency_table_and_answers_everything() {
    let _serial = common::serial();
    let json = std::env::temp_dir().join(format!("synergy-demo-{}.json", std::process::id()));
    let o = synergy(&["demo", "--duration-ms", "300", "--json", json.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}\n{}", stderr(&o));
    assert!(out.contains("p99.9 µs") && out.contains("signal") && out.contains("none"), "{out}");
    let runs: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 2);
    for r in runs {
        assert_eq!(r["answered"], r["requests"], "every request answered: {r}");
        assert_eq!(r["duplicates"], 0);
        assert!(r["classes"].as_array().unwrap().iter().all(|c| c["latency"]["count"].as_u64().unwrap() > 0));
    }
}

#[test]
fn bench_ctx_reports_both_switches_and_the_ratio() {
    let _serial = common::serial();
    let o = synergy(&["bench", "ctx", "--rounds", "3", "--round-trips", "20000"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(out.contains("synergy") && out.contains("corosensei") && out.contains("ratio"), "{out}");
}
