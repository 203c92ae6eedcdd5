//! Overload control (CoreSync §III-C, after Breakwater): a credit pool sized by AIMD on the
//! queueing delay of the oldest request, split evenly over the active sessions and piggybacked on
//! replies, and active queue management that rejects requests while that delay is far above target.
//!
//! The runtime measures D_m and counts sessions; everything decided from them is here, on plain
//! numbers:
//! - every control period, `CreditPool::update(D_m)`: if D_m > D_t the pool shrinks to
//!   `C · max(1 − β(D_m − D_t)/D_t, 0.5)`, else it grows by α;
//! - `CreditPool::rejecting(D_m)`: the AQM, true while D_m > D_drop (= 2·D_t by default);
//! - `CreditPool::per_session(active)`: how many requests each session may have outstanding.
//!
//! **α's unit.** The paper gives α = 0.1% and leaves the unit open. Here α is a fraction of the
//! active session count added per control period: with 100 sessions and a 10 µs period, 0.1
//! credit per period, 10,000 credits/s. Scaling with sessions keeps the time the pool needs to
//! give each session one more credit independent of how many sessions there are.
//!
//! **At least one credit per session.** CoreSync sets its overcommitted credits so that every
//! session that can generate load holds one (Credits_OC = sessions): the pool never drops below
//! the active session count, so a session never has to wait for an explicit credit message (which
//! this implementation does not send): a session with nothing outstanding may always send one
//! request.

/// A session that sent nothing for this long no longer counts as active.
pub const SESSION_IDLE_NS: u64 = 10_000_000;

/// Whether a session last seen at `last_seen_ns` still counts as active at `now`.
pub fn session_active(last_seen_ns: u64, now: u64) -> bool {
    now.saturating_sub(last_seen_ns) <= SESSION_IDLE_NS
}

/// The controller's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CreditParams {
    /// D_t: the target queueing delay (ns).
    pub target_delay_ns: u64,
    /// D_drop: the AQM rejects a request that waited more than this (ns); CoreSync uses 2·D_t.
    pub drop_delay_ns: u64,
    /// β: multiplicative-decrease gain (CoreSync: 0.02).
    pub beta: f64,
    /// α: additive increase per control period, as a fraction of the active sessions (see the
    /// module comment; CoreSync: 0.001).
    pub alpha: f64,
    /// The pool's ceiling (credits): bounds what a long quiet spell can accumulate.
    pub max_total: f64,
}

impl CreditParams {
    /// CoreSync's defaults for target delay `target_delay_ns`: β = 2%, α = 0.1%, D_drop = 2·D_t.
    pub fn coresync(target_delay_ns: u64) -> CreditParams {
        CreditParams {
            target_delay_ns,
            drop_delay_ns: 2 * target_delay_ns,
            beta: 0.02,
            alpha: 0.001,
            max_total: 1_000_000.0,
        }
    }

    /// The AQM's threshold: a queueing delay of `delay_ns` is past D_drop.
    pub fn past_drop_delay(&self, delay_ns: u64) -> bool {
        delay_ns > self.drop_delay_ns
    }
}

/// The credit pool, C_total.
#[derive(Debug, Clone, PartialEq)]
pub struct CreditPool {
    params: CreditParams,
    total: f64,
    /// Consecutive periods with D_m > D_t (a decrease streak), for the report.
    decreases: u64,
}

/// What one update did, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreditChange {
    /// The pool grew (D_m ≤ D_t).
    Increased,
    /// The pool shrank (D_m > D_t).
    Decreased,
    /// No measurement this period: the pool stays.
    Held,
}

impl CreditPool {
    /// A pool starting at `initial` credits (at least one per session once sessions appear).
    pub fn new(params: CreditParams, initial: f64) -> CreditPool {
        CreditPool { params, total: initial.clamp(1.0, params.max_total), decreases: 0 }
    }

    /// The pool's parameters.
    pub fn params(&self) -> &CreditParams {
        &self.params
    }

    /// C_total.
    pub fn total(&self) -> f64 {
        self.total
    }

    /// One control period: `d_m_ns` is the queueing delay of the oldest request seen this period
    /// (None if the runtime saw none, e.g. every worker in one long request: the pool holds);
    /// `sessions` the active session count (the floor of the pool and α's scale).
    pub fn update(&mut self, d_m_ns: Option<u64>, sessions: usize) -> CreditChange {
        let floor = (sessions.max(1) as f64).min(self.params.max_total);
        let change = match d_m_ns {
            None => CreditChange::Held,
            Some(d) if d > self.params.target_delay_ns => {
                let dt = self.params.target_delay_ns.max(1) as f64;
                let excess = (d - self.params.target_delay_ns) as f64 / dt;
                self.total *= (1.0 - self.params.beta * excess).max(0.5);
                self.decreases += 1;
                CreditChange::Decreased
            }
            Some(_) => {
                self.total += self.params.alpha * sessions.max(1) as f64;
                CreditChange::Increased
            }
        };
        self.total = self.total.clamp(floor, self.params.max_total);
        change
    }

    /// CoreSync's parking withdrawal (Algorithm 1, line 26): a core about to park takes
    /// `credits` out of the pool, so that fewer are issued while it sleeps. Bounded below by the
    /// floor of one credit per active session; returns what was actually taken, which is what
    /// `restore` must give back.
    pub fn withdraw(&mut self, credits: f64, sessions: usize) -> f64 {
        let floor = (sessions.max(1) as f64).min(self.params.max_total);
        let taken = credits.max(0.0).min((self.total - floor).max(0.0));
        self.total -= taken;
        taken
    }

    /// Gives back credits a parked core withdrew, when it wakes (Algorithm 1, line 34).
    pub fn restore(&mut self, credits: f64) {
        self.total = (self.total + credits.max(0.0)).min(self.params.max_total);
    }

    /// The AQM: reject requests while the oldest one has waited more than D_drop.
    pub fn rejecting(&self, d_m_ns: u64) -> bool {
        self.params.past_drop_delay(d_m_ns)
    }

    /// Requests each of `active` sessions may have outstanding: an even split of the pool, at
    /// least one (the pool is never below the session count, so the split never oversubscribes
    /// it by more than rounding).
    pub fn per_session(&self, active: usize) -> u32 {
        let share = self.total / active.max(1) as f64;
        (share.floor() as u32).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(initial: f64) -> CreditPool {
        CreditPool::new(CreditParams::coresync(80_000), initial)
    }

    #[test]
    fn below_target_grows_by_alpha_times_sessions() {
        let mut p = pool(100.0);
        assert_eq!(p.update(Some(10_000), 100), CreditChange::Increased);
        assert!((p.total() - 100.1).abs() < 1e-9, "{}", p.total());
        assert_eq!(p.update(Some(80_000), 100), CreditChange::Increased, "at the target: no decrease");
        assert!((p.total() - 100.2).abs() < 1e-9);
    }

    #[test]
    fn above_target_shrinks_in_proportion_to_the_excess_down_to_half() {
        let mut p = pool(1000.0);
        // D_m = 2·D_t: excess 1, factor 1 − 0.02 = 0.98.
        assert_eq!(p.update(Some(160_000), 10), CreditChange::Decreased);
        assert!((p.total() - 980.0).abs() < 1e-9, "{}", p.total());
        // D_m = 100·D_t: 1 − 0.02·99 < 0.5, so the factor is clamped at 0.5.
        p.update(Some(8_000_000), 10);
        assert!((p.total() - 490.0).abs() < 1e-9, "{}", p.total());
    }

    #[test]
    fn the_pool_never_goes_below_the_sessions_or_one_credit_each() {
        let mut p = pool(50.0);
        for _ in 0..1000 {
            p.update(Some(u64::MAX / 2), 20);
            assert!(p.total() >= 20.0, "{}", p.total());
            assert!(p.per_session(20) >= 1);
        }
        assert_eq!(p.total(), 20.0);
        assert_eq!(p.per_session(20), 1);
        // With no session yet the floor is one credit, never zero or negative.
        let mut q = pool(0.0);
        q.update(Some(u64::MAX / 2), 0);
        assert_eq!(q.total(), 1.0);
        assert_eq!(q.per_session(0), 1);
    }

    #[test]
    fn no_measurement_holds_the_pool() {
        let mut p = pool(300.0);
        assert_eq!(p.update(None, 10), CreditChange::Held);
        assert_eq!(p.total(), 300.0);
    }

    #[test]
    fn the_split_is_even_and_rounds_down() {
        let p = pool(250.0);
        assert_eq!(p.per_session(100), 2);
        assert_eq!(p.per_session(1), 250);
        assert!(u64::from(p.per_session(7)) * 7 <= 250);
    }

    #[test]
    fn the_aqm_rejects_only_above_twice_the_target() {
        let p = pool(10.0);
        assert!(!p.rejecting(160_000));
        assert!(p.rejecting(160_001));
    }

    #[test]
    fn a_withdrawal_stops_at_the_floor_and_is_given_back_whole() {
        let mut p = pool(300.0);
        assert_eq!(p.withdraw(50.0, 100), 50.0);
        assert_eq!(p.total(), 250.0);
        assert_eq!(p.withdraw(1_000.0, 100), 150.0, "only down to one credit per session");
        assert_eq!(p.total(), 100.0);
        assert_eq!(p.withdraw(-5.0, 100), 0.0, "a negative withdrawal takes nothing");
        p.restore(150.0);
        p.restore(50.0);
        assert_eq!(p.total(), 300.0);
    }

    #[test]
    fn the_ceiling_bounds_a_long_quiet_spell() {
        let params = CreditParams { max_total: 500.0, ..CreditParams::coresync(80_000) };
        let mut p = CreditPool::new(params, 499.0);
        for _ in 0..100_000 {
            p.update(Some(0), 100);
        }
        assert_eq!(p.total(), 500.0);
    }
}
