//! What a machine must have for each preemption mode, as plain functions of facts read elsewhere
//! (CPUID bits, the kernel's configuration text, its Module.symvers): testable without the
//! hardware they describe.

use serde::Serialize;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Present, or ran and succeeded.
    Pass,
    /// Absent: a mode that needs it cannot work on this machine.
    Missing,
    /// Present but failing when run.
    Fail,
    /// Not run, because something it needs is missing (named in the detail).
    NotRun,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Missing => "MISSING",
            Status::Fail => "FAIL",
            Status::NotRun => "not run",
        }
    }

    /// Whether the machine falls short here (the validation then exits non-zero).
    pub fn is_problem(self) -> bool {
        matches!(self, Status::Missing | Status::Fail)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Stable identifier, e.g. `cpu.uintr`, `kernel.config.CONFIG_RUST`.
    pub id: String,
    pub status: Status,
    /// What was found, and for a problem what to do about it.
    pub detail: String,
}

impl Check {
    pub fn new(id: impl Into<String>, status: Status, detail: impl Into<String>) -> Check {
        Check { id: id.into(), status, detail: detail.into() }
    }
}

/// The CPUID bits that matter, read once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CpuFacts {
    /// CPUID.7.0:EDX[5]: user interrupts (`--preempt=uintr`).
    pub uintr: bool,
    /// CPUID.1:ECX[21]: x2APIC (kmod_ipi writes the ICR through the x2APIC MSR).
    pub x2apic: bool,
    /// CPUID.80000007H:EDX[8]: the TSC runs at a constant rate in every state (the runtime's
    /// clock is rdtsc).
    pub invariant_tsc: bool,
    /// CPUID.1:ECX[31]: running under a hypervisor.
    pub hypervisor: bool,
}

impl CpuFacts {
    /// Reads this CPU's.
    pub fn read() -> CpuFacts {
        let cpuid = raw_cpuid::CpuId::new();
        let features = cpuid.get_feature_info();
        // raw-cpuid does not name UINTR (leaf 7 EDX bit 5); the uapi crate's check is the one the
        // modules and the runtime use. Leaf 7 is read only where the maximum leaf has it.
        let uintr = cpuid.get_extended_feature_info().is_some() && synergy_uapi::uintr::cpu_has_uintr();
        CpuFacts {
            uintr,
            x2apic: features.as_ref().is_some_and(|f| f.has_x2apic()),
            invariant_tsc: synergy::clock::cpu_has_invariant_tsc(),
            hypervisor: features.as_ref().is_some_and(|f| f.has_hypervisor()),
        }
    }
}

pub fn cpu_checks(f: &CpuFacts) -> Vec<Check> {
    let bit = |ok: bool, id: &str, yes: &str, no: &str| {
        Check::new(id, if ok { Status::Pass } else { Status::Missing }, if ok { yes } else { no })
    };
    vec![
        bit(
            f.uintr,
            "cpu.uintr",
            "CPUID.7.0:EDX[5] = 1: user interrupts (--preempt=uintr)",
            "CPUID.7.0:EDX[5] = 0: no user interrupts, so no --preempt=uintr (needs Sapphire Rapids or \
             later, on bare metal: no hypervisor passes UINTR through)",
        ),
        bit(
            f.x2apic,
            "cpu.x2apic",
            "CPUID.1:ECX[21] = 1: x2APIC (kmod_ipi's direct-APIC-ID IPIs)",
            "CPUID.1:ECX[21] = 0: no x2APIC, so no --preempt=ipi",
        ),
        bit(
            f.invariant_tsc,
            "cpu.invariant-tsc",
            "CPUID.80000007H:EDX[8] = 1: invariant TSC (the runtime's clock is rdtsc)",
            "CPUID.80000007H:EDX[8] = 0: no invariant TSC; the runtime falls back to clock_gettime, \
             which costs more per quantum check",
        ),
    ]
}

/// A kernel option the modules need, and why.
pub struct RequiredOption {
    pub name: &'static str,
    /// Accepted values (`y`, or `y`/`m`).
    pub values: &'static [&'static str],
    pub why: &'static str,
}

/// What kmod_ipi and kmod_uintr need from the running kernel (scripts/kernel/modules.config is
/// the fragment that provides it; PREEMPT_NOTIFIERS comes through KVM).
pub const REQUIRED_OPTIONS: &[RequiredOption] = &[
    RequiredOption { name: "CONFIG_RUST", values: &["y"], why: "the modules are written in Rust" },
    RequiredOption { name: "CONFIG_MODULES", values: &["y"], why: "the modules are loadable" },
    RequiredOption { name: "CONFIG_MODULE_UNLOAD", values: &["y"], why: "the modules are unloadable" },
    RequiredOption { name: "CONFIG_SMP", values: &["y"], why: "IPIs go between CPUs" },
    RequiredOption { name: "CONFIG_X86_X2APIC", values: &["y"], why: "kmod_ipi writes the x2APIC ICR" },
    RequiredOption {
        name: "CONFIG_PREEMPT_NOTIFIERS",
        values: &["y"],
        why: "kmod_uintr switches the user-interrupt MSRs with the thread (enable KVM, which selects it)",
    },
    RequiredOption {
        name: "CONFIG_RSEQ",
        values: &["y"],
        why: "kmod_ipi aborts an interrupted restartable sequence as signal delivery does",
    },
];

/// The value of `name` in a kernel configuration's text (`CONFIG_X=y`), `None` if unset.
pub fn config_value<'a>(config: &'a str, name: &str) -> Option<&'a str> {
    config.lines().find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix('=')))
}

/// Checks the required options in `config` (the running kernel's configuration, read from
/// `source`), or reports that the configuration cannot be read.
pub fn kernel_config_checks(config: Option<&str>, source: &str) -> Vec<Check> {
    let Some(config) = config else {
        return vec![Check::new(
            "kernel.config",
            Status::Missing,
            format!(
                "cannot read the running kernel's configuration ({source}): the options below are unchecked \
                 (install the kernel from scripts/kernel/package.sh, which ships its configuration)"
            ),
        )];
    };
    let mut checks = vec![Check::new("kernel.config", Status::Pass, format!("read from {source}"))];
    for opt in REQUIRED_OPTIONS {
        let value = config_value(config, opt.name);
        let ok = value.is_some_and(|v| opt.values.contains(&v));
        let found = value.map_or_else(|| "not set".to_string(), |v| format!("{}={v}", opt.name));
        checks.push(Check::new(
            format!("kernel.config.{}", opt.name),
            if ok { Status::Pass } else { Status::Missing },
            if ok { format!("{found}: {}", opt.why) } else { format!("{found}; needed: {}", opt.why) },
        ));
    }
    checks
}

/// Whether the kernel exports the CR4-shadow accessors to kmod_uintr (synergy's patch
/// scripts/kernel/patches/<series>/0001-*), from its Module.symvers; `None` when unreadable.
pub fn cr4_export_check(symvers: Option<&str>, source: &str) -> Check {
    const ID: &str = "kernel.cr4-shadow-export";
    let Some(symvers) = symvers else {
        return Check::new(
            ID,
            Status::NotRun,
            format!("{source} is unreadable (no kernel headers); loading kmod_uintr below is the test"),
        );
    };
    // Module.symvers: crc <TAB> symbol <TAB> module <TAB> export type <TAB> namespace.
    let missing: Vec<&str> = ["cr4_update_irqsoff", "cr4_read_shadow"]
        .into_iter()
        .filter(|sym| {
            !symvers.lines().any(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                f.len() >= 4 && f[1] == *sym && f.get(4).is_none_or(|ns| ns.is_empty() || ns.contains("kmod_uintr"))
            })
        })
        .collect();
    if missing.is_empty() {
        Check::new(ID, Status::Pass, "cr4_update_irqsoff and cr4_read_shadow are exported to kmod_uintr")
    } else {
        Check::new(
            ID,
            Status::Missing,
            format!(
                "{} not exported to kmod_uintr ({source}): kmod_uintr cannot load; build the kernel with \
                 scripts/kernel/package.sh (it applies scripts/kernel/patches/)",
                missing.join(" and ")
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cpu_without_uintr_is_missing_it_and_has_the_rest() {
        let f = CpuFacts { uintr: false, x2apic: true, invariant_tsc: true, hypervisor: true };
        let c = cpu_checks(&f);
        let status = |id: &str| c.iter().find(|c| c.id == id).unwrap().status;
        assert_eq!(status("cpu.uintr"), Status::Missing);
        assert_eq!(status("cpu.x2apic"), Status::Pass);
        assert_eq!(status("cpu.invariant-tsc"), Status::Pass);
    }

    #[test]
    fn config_values_are_matched_by_whole_name() {
        let cfg = "CONFIG_RUST_IS_AVAILABLE=y\n# CONFIG_RUST is not set\nCONFIG_KVM=m\n";
        assert_eq!(config_value(cfg, "CONFIG_RUST"), None);
        assert_eq!(config_value(cfg, "CONFIG_KVM"), Some("m"));
    }

    #[test]
    fn every_required_option_is_checked_and_an_unset_one_is_missing() {
        let mut cfg: String = REQUIRED_OPTIONS.iter().map(|o| format!("{}=y\n", o.name)).collect();
        let c = kernel_config_checks(Some(&cfg), "test");
        assert_eq!(c.len(), REQUIRED_OPTIONS.len() + 1);
        assert!(c.iter().all(|c| c.status == Status::Pass), "{c:?}");
        cfg = cfg.replace("CONFIG_PREEMPT_NOTIFIERS=y\n", "");
        let c = kernel_config_checks(Some(&cfg), "test");
        let bad: Vec<&str> = c.iter().filter(|c| c.status.is_problem()).map(|c| c.id.as_str()).collect();
        assert_eq!(bad, ["kernel.config.CONFIG_PREEMPT_NOTIFIERS"]);
        assert_eq!(kernel_config_checks(None, "none")[0].status, Status::Missing);
    }

    #[test]
    fn the_cr4_export_must_name_kmod_uintr() {
        let upstream = "0x0\tcr4_update_irqsoff\tvmlinux\tEXPORT_SYMBOL_GPL\tmodule:kvm,kvm-intel\n\
                        0x0\tcr4_read_shadow\tvmlinux\tEXPORT_SYMBOL_GPL\tmodule:kvm,kvm-intel\n";
        assert_eq!(cr4_export_check(Some(upstream), "s").status, Status::Missing);
        let patched = upstream.replace("kvm-intel\n", "kvm-intel,kmod_uintr\n");
        assert_eq!(cr4_export_check(Some(&patched), "s").status, Status::Pass);
        assert_eq!(cr4_export_check(None, "s").status, Status::NotRun);
    }
}
