//! The runtime's configuration as a TOML file (`--config FILE`): the keys are `synergy::Config`'s
//! field names; unknown keys and mistyped values are errors that name the file.

use std::path::Path;
use synergy::config::{Config, ConfigError};

pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError(format!("invalid configuration: {e}")))
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
        assert!(from_toml_str("wrokers = 3").unwrap_err().0.contains("unknown field"));
        assert!(from_toml_str("workers = \"many\"").is_err());
        assert!(from_toml_str("preempt = \"smoke\"").is_err());
    }
}
