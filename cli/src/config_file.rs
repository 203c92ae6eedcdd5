//! The runtime's configuration as a TOML file (`--config FILE`): the keys are `synergy::Config`'s
//! field names; unknown keys and mistyped values are errors that name the file.

use std::path::Path;
use synergy::config::{Config, ConfigError};

pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let msg = e.to_string();
        let hint =
            unknown_key(&msg).and_then(closest_key).map(|k| format!(" (did you mean `{k}`?)")).unwrap_or_default();
        ConfigError(format!("invalid configuration: {msg}{hint}"))
    })
}

/// The configuration as TOML that `from_toml_str` reads back to the same `Config` (`synergy
/// config` prints it): every key, defaults included, so the file says what ran.
pub fn to_toml(c: &Config) -> String {
    toml::to_string(c).expect("a Config is plain data: it always serialises")
}

/// Every key the file may set.
fn keys() -> Vec<String> {
    // The optional keys appear only when set: set them for the list.
    let c = Config { worker_cores: Some(vec![1]), timer_core: Some(0), ..Config::default() };
    match toml::Value::try_from(&c) {
        Ok(toml::Value::Table(t)) => t.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// The key serde's "unknown field `x`" message names.
fn unknown_key(msg: &str) -> Option<&str> {
    let rest = &msg[msg.find("unknown field `")? + "unknown field `".len()..];
    Some(&rest[..rest.find('`')?])
}

/// The valid key closest to `unknown` by edit distance, if it is close enough to be a typo.
fn closest_key(unknown: &str) -> Option<String> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut prev = row[0];
            row[0] = i + 1;
            for j in 0..b.len() {
                let cur = row[j + 1];
                row[j + 1] = (prev + usize::from(ca != b[j])).min(row[j] + 1).min(cur + 1);
                prev = cur;
            }
        }
        row[b.len()]
    }
    keys()
        .into_iter()
        .map(|k| (distance(unknown, &k), k))
        .min()
        .filter(|(d, _)| *d <= 2.max(unknown.len() / 3))
        .map(|(_, k)| k)
}

pub fn from_toml_file(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
    from_toml_str(&text).map_err(|e| ConfigError(format!("{}: {}", path.display(), e.0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use synergy::PreemptMode;

    #[test]
    fn toml_parses_and_rejects_unknown_or_mistyped_keys() {
        let c = from_toml_str("workers = 3\nquantum_factor = 4.5\npreempt = \"none\"\nthresh_wqd_us = 15").unwrap();
        assert_eq!((c.workers, c.quantum_factor, c.preempt, c.thresh_wqd_us), (3, 4.5, PreemptMode::None, 15));
        assert_eq!(c.stack_kib, Config::default().stack_kib);
        let e = from_toml_str("wrokers = 3").unwrap_err().0;
        assert!(e.contains("unknown field") && e.contains("did you mean `workers`?"), "{e}");
        let e = from_toml_str("quantum_factr = 3.0").unwrap_err().0;
        assert!(e.contains("did you mean `quantum_factor`?"), "{e}");
        assert!(!from_toml_str("entirely_unrelated_setting = 1").unwrap_err().0.contains("did you mean"));
        assert!(from_toml_str("workers = \"many\"").is_err());
        assert!(from_toml_str("preempt = \"smoke\"").is_err());
    }

    /// `to_toml` and `from_toml_str` round-trip every key (issue 43, item 3): a configuration
    /// with every field away from its default (a struct literal without `..`, so a new field
    /// fails to compile here until it is added) comes back equal, and every key of the printed
    /// file differs from the default's.
    #[test]
    fn every_key_round_trips_through_toml() {
        use synergy::config::{Coupling, IdleMode, OverloadMode, ShinjukuQueues, TimerYield};
        use synergy::policy::shinjuku::PreemptedTo;
        use synergy::policy::system::SchedPolicy;
        let d = Config::default();
        let c = Config {
            workers: d.workers + 2,
            worker_cores: Some(vec![3, 5, 7]),
            timer_core: Some(2),
            quantum_factor: d.quantum_factor + 1.5,
            congested_quantum_factor: d.congested_quantum_factor + 2.25,
            thresh_wqd_us: d.thresh_wqd_us + 7,
            steal_threshold: d.steal_threshold + 3,
            preempt: PreemptMode::Ipi,
            ci_grace_us: d.ci_grace_us + 11,
            stack_kib: d.stack_kib * 2,
            max_green_threads: d.max_green_threads * 2,
            rx_capacity: d.rx_capacity * 2,
            pin: !d.pin,
            policy: SchedPolicy::Shinjuku,
            long_kinds: vec![1, 4],
            darc_reserved_workers: d.darc_reserved_workers + 1,
            shinjuku_queues: if d.shinjuku_queues == ShinjukuQueues::Mq {
                ShinjukuQueues::Sq
            } else {
                ShinjukuQueues::Mq
            },
            shinjuku_preempted: if d.shinjuku_preempted == PreemptedTo::Head {
                PreemptedTo::Tail
            } else {
                PreemptedTo::Head
            },
            shinjuku_slo_us: vec![10, 200],
            dispatchers: d.dispatchers + 1,
            shinjuku_quantum_us: d.shinjuku_quantum_us + 3,
            shinjuku_queue_limit: d.shinjuku_queue_limit + 9,
            timer_yield: if d.timer_yield == TimerYield::Never { TimerYield::Always } else { TimerYield::Never },
            idle: if d.idle == IdleMode::Park { IdleMode::Spin } else { IdleMode::Park },
            idle_poll_us: d.idle_poll_us + 13,
            wake_delay_us: d.wake_delay_us + 17,
            overload: if d.overload == OverloadMode::Credits { OverloadMode::None } else { OverloadMode::Credits },
            target_delay_us: d.target_delay_us + 19,
            drop_delay_us: d.drop_delay_us + 23,
            credit_beta: d.credit_beta / 2.0,
            credit_alpha: d.credit_alpha + 0.125,
            credit_period_us: d.credit_period_us + 29,
            coupling: if d.coupling == Coupling::CoreSync { Coupling::None } else { Coupling::CoreSync },
            coresync_r: d.coresync_r + 31.0,
        };
        let text = to_toml(&c);
        assert_eq!(from_toml_str(&text).expect("the printed file parses"), c, "{text}");
        assert_eq!(from_toml_str(&to_toml(&d)).unwrap(), d);
        let table = |t: &str| -> toml::Table { toml::from_str(t).unwrap() };
        let (changed, default) = (table(&text), table(&to_toml(&d)));
        let all = keys();
        assert!(all.len() >= 34, "{all:?}");
        for k in &all {
            assert!(changed.contains_key(k), "{k} missing from the printed file:\n{text}");
            assert_ne!(changed.get(k), default.get(k), "{k} was not changed, so its round trip proves nothing");
        }
    }
}
