//! CoreSync's coupling of core allocation with overload control (its Algorithm 1): whether a
//! core that has found no work for POLL_PERIOD may park.
//!
//! Overload control exposes three numbers (CoreSync §III-D): the active sessions, the *drained*
//! sessions (those holding no credit they could use: every credit they were granted is a
//! request at the server), and the *issued* credits (granted to clients and not used by a
//! request at the server: the largest burst that can arrive within one network RTT). The gate:
//!
//! 1. a drained session means persistent overload: do not park (keeps the cores a sawtooth of
//!    the credit pool would otherwise give away);
//! 2. only one core parks at a time;
//! 3. parking must keep the issued credits proportional to the allocated cores: while
//!    `issued − sessions > R · cores`, the core withdraws `(issued − sessions) / cores` credits
//!    from the pool once and polls until revocation (which rides on replies, an RTT) brings the
//!    issued credits down; then it parks. A woken core gives its withdrawal back.
//!
//! R trades latency for CPU: a small R withdraws credits more often before parking, shrinking the
//! bursts clients can send (lower latency) but keeping cores polling longer (more CPU).

/// What the overload controller exposes, at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CreditState {
    /// Active sessions.
    pub sessions: usize,
    /// Sessions with no usable credit.
    pub drained: usize,
    /// Credits granted and not in use by a request at the server.
    pub issued: f64,
}

impl CreditState {
    /// Tallies sessions given, for each, the credits the server last granted it and how many of
    /// its requests the server holds (received, not yet answered).
    pub fn tally(sessions: impl IntoIterator<Item = (u32, u32)>) -> CreditState {
        let mut s = CreditState::default();
        for (granted, in_server) in sessions {
            s.sessions += 1;
            let unused = granted.saturating_sub(in_server);
            if unused == 0 {
                s.drained += 1;
            }
            s.issued += f64::from(unused);
        }
        s
    }
}

/// Why a core keeps polling instead of parking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// A session is drained: the server is overloaded.
    Drained,
    /// Another core is on its way to parking.
    AnotherParking,
    /// This core withdrew credits and waits for the issued credits to fall.
    AwaitingRevocation,
}

/// The gate's verdict.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ParkGate {
    /// Sleep now.
    Park,
    /// Keep polling for the hold's reason.
    KeepPolling(Hold),
    /// Withdraw this many credits from the pool, then keep polling (and ask again).
    Withdraw(f64),
}

/// Algorithm 1, lines 16-31, for a core that has polled POLL_PERIOD without finding work.
/// `allocated_cores` counts the cores not parked (this one included); `withdrawn` says whether
/// this core already withdrew its credits; `another_parking` whether another core did and has
/// not parked yet.
pub fn park_gate(
    state: &CreditState,
    allocated_cores: usize,
    another_parking: bool,
    withdrawn: bool,
    r: f64,
) -> ParkGate {
    if state.drained > 0 {
        return ParkGate::KeepPolling(Hold::Drained);
    }
    if another_parking {
        return ParkGate::KeepPolling(Hold::AnotherParking);
    }
    let cores = allocated_cores.max(1) as f64;
    let surplus = state.issued - state.sessions as f64;
    if surplus > r * cores {
        if withdrawn {
            ParkGate::KeepPolling(Hold::AwaitingRevocation)
        } else {
            ParkGate::Withdraw(surplus / cores)
        }
    } else {
        ParkGate::Park
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(sessions: usize, drained: usize, issued: f64) -> CreditState {
        CreditState { sessions, drained, issued }
    }

    #[test]
    fn tally_counts_unused_credits_and_sessions_without_any() {
        // Granted 3 with 1 at the server: 2 unused. Granted 2 with 2 there: drained. Granted 1
        // with 2 there (the grant shrank while they were in flight): drained, nothing unused.
        let s = CreditState::tally([(3, 1), (2, 2), (1, 2), (4, 0)]);
        assert_eq!(s, state(4, 2, 6.0));
        assert_eq!(CreditState::tally([]), CreditState::default());
    }

    #[test]
    fn a_drained_session_vetoes_parking_before_anything_else() {
        let s = state(100, 1, 0.0);
        assert_eq!(park_gate(&s, 4, true, true, 50.0), ParkGate::KeepPolling(Hold::Drained));
    }

    #[test]
    fn one_core_parks_at_a_time() {
        let s = state(100, 0, 100.0);
        assert_eq!(park_gate(&s, 4, true, false, 50.0), ParkGate::KeepPolling(Hold::AnotherParking));
        assert_eq!(park_gate(&s, 4, false, false, 50.0), ParkGate::Park);
    }

    #[test]
    fn issued_credits_above_r_per_core_are_withdrawn_once_then_awaited() {
        // 100 sessions, 4 cores, R = 50: up to 100 + 200 issued credits may stay.
        assert_eq!(park_gate(&state(100, 0, 300.0), 4, false, false, 50.0), ParkGate::Park);
        let s = state(100, 0, 500.0);
        assert_eq!(park_gate(&s, 4, false, false, 50.0), ParkGate::Withdraw(100.0), "(500 - 100) / 4");
        assert_eq!(park_gate(&s, 4, false, true, 50.0), ParkGate::KeepPolling(Hold::AwaitingRevocation));
        // Revocation brought the issued credits down: park.
        assert_eq!(park_gate(&state(100, 0, 290.0), 4, false, true, 50.0), ParkGate::Park);
    }

    #[test]
    fn a_smaller_r_withdraws_where_a_larger_one_parks() {
        let s = state(100, 0, 400.0);
        assert_eq!(park_gate(&s, 4, false, false, 100.0), ParkGate::Park);
        assert!(matches!(park_gate(&s, 4, false, false, 10.0), ParkGate::Withdraw(w) if w == 75.0));
    }
}
