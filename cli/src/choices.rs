//! Command-line spellings of the libraries' named choices. The libraries know their names
//! (`name`, `named`, `ALL`) but nothing of clap; these parsers list the names in `--help` and in
//! the error for a bad value.

use clap::builder::{PossibleValuesParser, TypedValueParser};
use synergy::config::TimerYield;
use synergy::PreemptMode;
use synergy_eval::workload::WorkloadName;
use synergy_policy::system::SchedPolicy;

pub fn preempt() -> impl TypedValueParser<Value = PreemptMode> {
    PossibleValuesParser::new(PreemptMode::ALL.map(PreemptMode::name))
        .map(|s| PreemptMode::named(&s).expect("a listed name"))
}

pub fn policy() -> impl TypedValueParser<Value = SchedPolicy> {
    PossibleValuesParser::new(SchedPolicy::ALL.map(SchedPolicy::name))
        .map(|s| SchedPolicy::named(&s).expect("a listed name"))
}

pub fn timer_yield() -> impl TypedValueParser<Value = TimerYield> {
    PossibleValuesParser::new(TimerYield::ALL.map(TimerYield::name))
        .map(|s| TimerYield::named(&s).expect("a listed name"))
}

pub fn workload() -> impl TypedValueParser<Value = WorkloadName> {
    PossibleValuesParser::new(WorkloadName::ALL.map(WorkloadName::name))
        .map(|s| WorkloadName::named(&s).expect("a listed name"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back_to_its_value() {
        for m in PreemptMode::ALL {
            assert_eq!(PreemptMode::named(m.name()), Some(m));
        }
        for p in SchedPolicy::ALL {
            assert_eq!(SchedPolicy::named(p.name()), Some(p));
        }
        for w in WorkloadName::ALL {
            assert_eq!(WorkloadName::named(w.name()), Some(w));
        }
        for t in TimerYield::ALL {
            assert_eq!(TimerYield::named(t.name()), Some(t));
        }
        assert_eq!(PreemptMode::named("smoke"), None);
    }
}
