//! CoreSync's coupling of parking with overload control (`--idle park --overload credits`,
//! `--coupling coresync`, `--coresync-r R`): the counts Algorithm 1 reads, a worker's side of
//! the gate, and the timer core's side, which owns the credit pool. The decision itself is
//! `policy::coresync::park_gate`.
//!
//! What is counted, per session slot (`overload::SESSION_SLOTS`, a request's `flow` modulo it):
//! - `granted`: the credits the last reply to the session carried (0 before any: the client's
//!   first credit, counted as 1);
//! - `in_server`: its requests the runtime holds, from the transport poll that took them to the
//!   reject or the end of the handler. Requests still in a kernel socket buffer are not seen;
//!   with credits obeyed those are at most the credits issued, which the gate counts as issued.
//!
//! Every control period the timer core tallies the sessions active at its last recount
//! (`CreditState::tally`) and publishes the state in one word. A worker that found no work for
//! POLL_PERIOD asks the gate:
//! - a drained session vetoes parking (counted once per idle spell);
//! - one worker parks at a time: the worker that starts (a withdrawal or a park) holds the
//!   parking turn until it is parked or finds work;
//! - a withdrawal is posted to the timer core, which takes it out of the pool on its next loop
//!   (bounded by the pool's floor) and publishes the smaller grant at once; the worker polls
//!   until the published issued credits fall (replies carry the smaller grant; a session idle
//!   for `SESSION_IDLE_NS` drops out of the tally, so an idle server parks within that time
//!   even though no reply revokes anything);
//! - a woken worker gives its withdrawal back. One that finds work before it parks forgets it
//!   (Algorithm 1 jumps to the work and its C_sub is lost; the additive increase regrows the
//!   pool), as the simulator does.

use crate::policy::coresync::{park_gate, CreditState, Hold, ParkGate};
use crate::policy::overload::CreditPool;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};

/// A worker's channel to the timer core.
#[repr(align(64))]
#[derive(Default)]
struct WorkerSlot {
    /// Credits to withdraw (f64 bits; 0 = none asked), posted by the worker, taken by the timer.
    asked: AtomicU64,
    /// How the worker's withdrawal ends (`END_*`), posted by the worker after `asked`.
    end: AtomicU8,
    /// Worker-private (only its own thread touches them): it withdrew in this parking attempt;
    /// it counted a drained veto in this idle spell.
    withdrew: AtomicBool,
    vetoed: AtomicBool,
}

const END_NONE: u8 = 0;
/// Woken: the pool gets the withdrawal back.
const END_GIVE_BACK: u8 = 1;
/// Found work before parking: the withdrawal is dropped.
const END_FORGET: u8 = 2;

/// Per session slot: the counts the tally reads.
#[derive(Default)]
struct SessionSlot {
    granted: AtomicU32,
    in_server: AtomicU32,
}

/// What a worker does after asking the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Park now.
    Park,
    /// Keep polling: parking would leave a drained session without credits.
    KeepPolling,
}

/// What workers and the timer core share (`OverloadShared::coupling`).
pub struct CouplingShared {
    r: f64,
    sessions: Box<[SessionSlot]>,
    workers: Box<[WorkerSlot]>,
    /// The tally of the last control period: sessions (bits 48..64), drained (32..48), issued
    /// credits, saturated (0..32). One word, so a worker never reads halves of two tallies.
    state: AtomicU64,
    /// The worker holding the parking turn, + 1 (0: none).
    turn: AtomicUsize,
    drained_vetoes: AtomicU64,
    withdrawals: AtomicU64,
    /// The timer core's `Ledger` sums (f64 bits), published after each change.
    ledger: [AtomicU64; 4],
}

/// The timer core's account of withdrawals: what each worker's pending withdrawal took from the
/// pool, and the credits taken, given back and forgotten in all. At every look,
/// `withdrawn = returned + forgotten + Σ held`.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    held: Vec<f64>,
    withdrawn: f64,
    returned: f64,
    forgotten: f64,
}

impl Ledger {
    /// An empty ledger for `workers` workers.
    pub fn new(workers: usize) -> Ledger {
        Ledger { held: vec![0.0; workers], ..Ledger::default() }
    }

    fn sums(&self) -> [f64; 4] {
        [self.withdrawn, self.returned, self.forgotten, self.held.iter().sum()]
    }
}

fn pack(s: &CreditState) -> u64 {
    let sessions = s.sessions.min(u16::MAX as usize) as u64;
    let drained = s.drained.min(u16::MAX as usize) as u64;
    let issued = s.issued.clamp(0.0, u32::MAX as f64) as u64;
    sessions << 48 | drained << 32 | issued
}

fn unpack(w: u64) -> CreditState {
    CreditState { sessions: (w >> 48) as usize, drained: (w >> 32 & 0xffff) as usize, issued: (w & 0xffff_ffff) as f64 }
}

impl CouplingShared {
    /// The coupling state for `session_slots` sessions and `workers` workers; `r` is CoreSync's R (credits issued per allocated core beyond one per session).
    pub fn new(r: f64, session_slots: usize, workers: usize) -> CouplingShared {
        CouplingShared {
            r,
            sessions: (0..session_slots).map(|_| SessionSlot::default()).collect(),
            workers: (0..workers).map(|_| WorkerSlot::default()).collect(),
            state: AtomicU64::new(0),
            turn: AtomicUsize::new(0),
            drained_vetoes: AtomicU64::new(0),
            withdrawals: AtomicU64::new(0),
            ledger: Default::default(),
        }
    }

    fn session(&self, flow: u32) -> &SessionSlot {
        &self.sessions[flow as usize % self.sessions.len()]
    }

    /// A transport poll took a request of session `flow`.
    pub fn received(&self, flow: u32) {
        self.session(flow).in_server.fetch_add(1, Ordering::Relaxed);
    }

    /// A request of session `flow` was rejected or its handler returned.
    pub fn finished(&self, flow: u32) {
        let prev = self.session(flow).in_server.fetch_sub(1, Ordering::Relaxed);
        debug_assert!(prev > 0, "a request finished that was never received");
    }

    /// Whether session slot `slot` has requests in the server.
    pub fn holds(&self, slot: usize) -> bool {
        self.sessions[slot].in_server.load(Ordering::Relaxed) > 0
    }

    /// A reply to session `flow` grants it `credits`.
    pub fn granted(&self, flow: u32, credits: u32) {
        let slot = &self.session(flow).granted;
        // Skipped while unchanged, which keeps the line shared.
        if slot.load(Ordering::Relaxed) != credits {
            slot.store(credits, Ordering::Relaxed);
        }
    }

    /// Algorithm 1 for `worker`, idle for POLL_PERIOD, with `allocated` workers not parked (it
    /// included). On `Park` the worker holds the parking turn until `parked` releases it.
    pub fn gate(&self, worker: usize, allocated: usize) -> Verdict {
        let me = worker + 1;
        let w = &self.workers[worker];
        let turn = self.turn.load(Ordering::Acquire);
        let state = unpack(self.state.load(Ordering::Acquire));
        // A withdrawal whose end the timer core has not taken yet counts as one still pending.
        let withdrew = w.withdrew.load(Ordering::Relaxed) || w.end.load(Ordering::Acquire) != END_NONE;
        match park_gate(&state, allocated, turn != 0 && turn != me, withdrew, self.r) {
            ParkGate::KeepPolling(Hold::Drained) => {
                if !w.vetoed.swap(true, Ordering::Relaxed) {
                    self.drained_vetoes.fetch_add(1, Ordering::Relaxed);
                }
                Verdict::KeepPolling
            }
            ParkGate::KeepPolling(_) => Verdict::KeepPolling,
            verdict => {
                if turn != me && self.turn.compare_exchange(0, me, Ordering::AcqRel, Ordering::Acquire).is_err() {
                    return Verdict::KeepPolling; // another worker took the turn first
                }
                match verdict {
                    ParkGate::Withdraw(credits) => {
                        w.asked.store(credits.to_bits(), Ordering::Release);
                        w.withdrew.store(true, Ordering::Relaxed);
                        self.withdrawals.fetch_add(1, Ordering::Relaxed);
                        Verdict::KeepPolling
                    }
                    _ => Verdict::Park,
                }
            }
        }
    }

    /// `worker` announced itself parked: it gives up the parking turn.
    pub fn parked(&self, worker: usize) {
        self.release_turn(worker);
    }

    fn release_turn(&self, worker: usize) {
        // A load first: the turn's line is shared by every worker, and most calls do not hold it.
        if self.turn.load(Ordering::Relaxed) == worker + 1 {
            let _ = self.turn.compare_exchange(worker + 1, 0, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    /// `worker` was woken from a park: its withdrawal goes back to the pool.
    pub fn woken(&self, worker: usize) {
        let w = &self.workers[worker];
        w.vetoed.store(false, Ordering::Relaxed);
        if w.withdrew.swap(false, Ordering::Relaxed) {
            w.end.store(END_GIVE_BACK, Ordering::Release);
        }
    }

    /// `worker` found work after idling: its parking attempt is over (the turn released, a
    /// withdrawal forgotten). Called once per idle spell that ends in work, not per request.
    pub fn found_work(&self, worker: usize) {
        let w = &self.workers[worker];
        w.vetoed.store(false, Ordering::Relaxed);
        if w.withdrew.swap(false, Ordering::Relaxed) {
            w.end.store(END_FORGET, Ordering::Release);
        }
        self.release_turn(worker);
    }

    /// The timer core's half, every loop: applies posted withdrawals and their ends to `pool`,
    /// keeping `ledger`. True if the pool changed.
    pub fn serve_withdrawals(&self, pool: &mut CreditPool, ledger: &mut Ledger, active: usize) -> bool {
        let mut changed = false;
        let mut booked = false;
        for (w, held) in self.workers.iter().zip(ledger.held.iter_mut()) {
            // The end first: a worker posts `asked` before `end`, so an end seen here comes with
            // the withdrawal it ends.
            let end = w.end.swap(END_NONE, Ordering::AcqRel);
            let asked = w.asked.swap(0, Ordering::AcqRel);
            if asked != 0 {
                let taken = pool.withdraw(f64::from_bits(asked), active);
                *held += taken;
                ledger.withdrawn += taken;
                changed = true;
                booked = true;
            }
            match end {
                END_GIVE_BACK => {
                    let back = std::mem::take(held);
                    pool.restore(back);
                    ledger.returned += back;
                    changed = true;
                    booked = true;
                }
                END_FORGET => {
                    ledger.forgotten += std::mem::take(held);
                    booked = true;
                }
                _ => {}
            }
        }
        if booked {
            for (slot, v) in self.ledger.iter().zip(ledger.sums()) {
                slot.store(v.to_bits(), Ordering::Relaxed);
            }
        }
        changed
    }

    /// The timer core's half, every control period: tallies the `active` session slots.
    pub fn publish(&self, active: &[usize]) -> CreditState {
        let state = CreditState::tally(active.iter().map(|&s| {
            let slot = &self.sessions[s];
            (slot.granted.load(Ordering::Relaxed).max(1), slot.in_server.load(Ordering::Relaxed))
        }));
        self.state.store(pack(&state), Ordering::Release);
        state
    }

    /// The coupling's counters, for `RunStats`.
    pub fn snapshot(&self) -> CouplingSnapshot {
        let s = unpack(self.state.load(Ordering::Acquire));
        CouplingSnapshot {
            r: self.r,
            sessions: s.sessions as u64,
            drained: s.drained as u64,
            issued: s.issued as u64,
            drained_vetoes: self.drained_vetoes.load(Ordering::Relaxed),
            withdrawals: self.withdrawals.load(Ordering::Relaxed),
            withdrawn: f64::from_bits(self.ledger[0].load(Ordering::Relaxed)),
            returned: f64::from_bits(self.ledger[1].load(Ordering::Relaxed)),
            forgotten: f64::from_bits(self.ledger[2].load(Ordering::Relaxed)),
            held: f64::from_bits(self.ledger[3].load(Ordering::Relaxed)),
        }
    }
}

/// The coupling at a snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct CouplingSnapshot {
    /// CoreSync's R.
    pub r: f64,
    /// The last tally: active sessions, drained sessions, issued credits.
    pub sessions: u64,
    /// Drained sessions in the last tally (see `sessions`).
    pub drained: u64,
    /// Credits issued in the last tally (see `sessions`).
    pub issued: u64,
    /// Idle spells in which a drained session kept a worker from parking.
    pub drained_vetoes: u64,
    /// Withdrawals workers posted before parking.
    pub withdrawals: u64,
    /// Credits the pool gave for them; given back by woken workers; forgotten by workers that
    /// found work before parking; held by workers now (`withdrawn = returned + forgotten +
    /// held`, read consistently once the timer core has stopped).
    pub withdrawn: f64,
    /// Withdrawn credits given back by woken workers (see `withdrawn`).
    pub returned: f64,
    /// Withdrawn credits forgotten by workers that found work before parking (see `withdrawn`).
    pub forgotten: f64,
    /// Withdrawn credits held by parked workers now (see `withdrawn`).
    pub held: f64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::overload::CreditParams;

    fn pool(total: f64) -> CreditPool {
        CreditPool::new(CreditParams::coresync(80_000), total)
    }

    #[test]
    fn the_tally_counts_unused_credits_and_a_session_never_answered_holds_one() {
        let c = CouplingShared::new(50.0, 16, 2);
        c.granted(1, 4);
        c.received(1);
        c.received(2); // never answered: its one credit is in use
        c.granted(3, 2);
        let s = c.publish(&[1, 2, 3]);
        assert_eq!(s, CreditState { sessions: 3, drained: 1, issued: 5.0 });
        assert_eq!(unpack(c.state.load(Ordering::Relaxed)), s);
        c.finished(2);
        assert_eq!(c.publish(&[1, 2, 3]).drained, 0);
        assert_eq!(c.snapshot().issued, 6);
    }

    #[test]
    fn a_drained_session_vetoes_parking_and_is_counted_once_per_idle_spell() {
        let c = CouplingShared::new(50.0, 16, 2);
        c.received(5);
        c.publish(&[5]);
        assert_eq!(c.gate(0, 2), Verdict::KeepPolling);
        assert_eq!(c.gate(0, 2), Verdict::KeepPolling);
        assert_eq!(c.snapshot().drained_vetoes, 1);
        c.found_work(0);
        assert_eq!(c.gate(0, 2), Verdict::KeepPolling);
        assert_eq!(c.snapshot().drained_vetoes, 2);
        c.finished(5);
        c.publish(&[5]);
        assert_eq!(c.gate(0, 2), Verdict::Park);
    }

    #[test]
    fn one_worker_parks_at_a_time() {
        let c = CouplingShared::new(50.0, 16, 3);
        assert_eq!(c.gate(0, 3), Verdict::Park);
        assert_eq!(c.gate(1, 3), Verdict::KeepPolling, "worker 0 holds the turn");
        c.parked(0);
        assert_eq!(c.gate(1, 2), Verdict::Park);
        c.found_work(1); // it found work after all: the turn is free again
        assert_eq!(c.gate(2, 2), Verdict::Park);
    }

    #[test]
    fn a_withdrawal_is_taken_by_the_timer_core_and_given_back_on_waking() {
        let c = CouplingShared::new(1.0, 16, 2);
        let mut p = pool(100.0);
        let mut held = Ledger::new(2);
        c.granted(7, 50);
        c.publish(&[7]);
        // issued 50 - 1 session > R · 2 cores: withdraw (50 - 1) / 2.
        assert_eq!(c.gate(0, 2), Verdict::KeepPolling);
        assert!(c.serve_withdrawals(&mut p, &mut held, 1));
        assert_eq!(p.total(), 75.5);
        assert_eq!(held.held[0], 24.5);
        assert_eq!(c.gate(0, 2), Verdict::KeepPolling, "awaiting revocation: no second withdrawal");
        assert!(!c.serve_withdrawals(&mut p, &mut held, 1));
        // A reply grants the session the smaller share: issued falls, the worker parks.
        c.granted(7, 2);
        c.publish(&[7]);
        assert_eq!(c.gate(0, 2), Verdict::Park);
        c.parked(0);
        c.woken(0);
        assert!(c.serve_withdrawals(&mut p, &mut held, 1));
        assert_eq!((p.total(), held.held[0]), (100.0, 0.0));
        let s = c.snapshot();
        assert_eq!((s.withdrawals, s.withdrawn, s.returned, s.forgotten, s.held), (1, 24.5, 24.5, 0.0, 0.0));
    }

    #[test]
    fn a_withdrawal_ended_before_the_timer_core_looked_is_still_taken_then_settled() {
        let c = CouplingShared::new(1.0, 16, 1);
        let mut p = pool(100.0);
        let mut held = Ledger::new(1);
        c.granted(7, 50);
        c.publish(&[7]);
        assert_eq!(c.gate(0, 2), Verdict::KeepPolling);
        c.found_work(0); // forgotten before the timer core took it
        assert_eq!(c.gate(0, 2), Verdict::KeepPolling, "no new withdrawal until the end is taken");
        c.serve_withdrawals(&mut p, &mut held, 1);
        assert_eq!((p.total(), held.held[0]), (75.5, 0.0), "taken and forgotten, as Algorithm 1 does");
        assert_eq!((c.snapshot().withdrawn, c.snapshot().forgotten), (24.5, 24.5));
        // The same with a wake-up: taken and given back in one look.
        let mut p = pool(100.0);
        c.gate(0, 2);
        c.woken(0);
        c.serve_withdrawals(&mut p, &mut held, 1);
        assert_eq!((p.total(), held.held[0]), (100.0, 0.0));
        let s = c.snapshot();
        assert_eq!((s.withdrawn, s.returned, s.forgotten, s.held), (49.0, 24.5, 24.5, 0.0));
    }
}
