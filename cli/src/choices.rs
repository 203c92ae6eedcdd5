//! Command-line spellings of the libraries' named choices. The libraries know their names
//! (`name`, `named`, `ALL`) but nothing of clap; these parsers list the names in `--help` and in
//! the error for a bad value.

use clap::builder::{PossibleValuesParser, TypedValueParser};
use synergy::config::TimerYield;
use synergy::PreemptMode;
use synergy_eval::workload::WorkloadName;
use synergy_policy::system::SchedPolicy;

/// A parser for the `N` names of a library choice, mapped back with its `named`.
fn choice<T: Clone + Send + Sync + 'static, const N: usize>(
    names: [&'static str; N],
    named: fn(&str) -> Option<T>,
) -> impl TypedValueParser<Value = T> {
    PossibleValuesParser::new(names).map(move |s| named(&s).expect("a listed name"))
}

pub fn preempt() -> impl TypedValueParser<Value = PreemptMode> {
    choice(PreemptMode::ALL.map(PreemptMode::name), PreemptMode::named)
}

pub fn policy() -> impl TypedValueParser<Value = SchedPolicy> {
    choice(SchedPolicy::ALL.map(SchedPolicy::name), SchedPolicy::named)
}

pub fn timer_yield() -> impl TypedValueParser<Value = TimerYield> {
    choice(TimerYield::ALL.map(TimerYield::name), TimerYield::named)
}

pub fn idle() -> impl TypedValueParser<Value = synergy::config::IdleMode> {
    use synergy::config::IdleMode;
    choice(IdleMode::ALL.map(IdleMode::name), IdleMode::named)
}

pub fn overload() -> impl TypedValueParser<Value = synergy::config::OverloadMode> {
    use synergy::config::OverloadMode;
    choice(OverloadMode::ALL.map(OverloadMode::name), OverloadMode::named)
}

pub fn coupling() -> impl TypedValueParser<Value = synergy::config::Coupling> {
    use synergy::config::Coupling;
    choice(Coupling::ALL.map(Coupling::name), Coupling::named)
}

pub fn shinjuku_queues() -> impl TypedValueParser<Value = synergy::config::ShinjukuQueues> {
    use synergy::config::ShinjukuQueues;
    choice(ShinjukuQueues::ALL.map(ShinjukuQueues::name), ShinjukuQueues::named)
}

pub fn preempted_to() -> impl TypedValueParser<Value = synergy_policy::shinjuku::PreemptedTo> {
    use synergy_policy::shinjuku::PreemptedTo;
    choice(PreemptedTo::ALL.map(PreemptedTo::name), PreemptedTo::named)
}

pub fn workload() -> impl TypedValueParser<Value = WorkloadName> {
    choice(WorkloadName::ALL.map(WorkloadName::name), WorkloadName::named)
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
        for o in synergy::config::OverloadMode::ALL {
            assert_eq!(synergy::config::OverloadMode::named(o.name()), Some(o));
        }
        assert_eq!(PreemptMode::named("smoke"), None);
    }
}
