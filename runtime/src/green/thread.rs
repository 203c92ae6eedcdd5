//! A green thread: a context, its stack, and the bookkeeping of the request it is running.

use super::locals::GreenLocals;
use super::save_area::SaveArea;
use super::{Context, Stack};
use std::io;

#[repr(C)]
/// A green thread: its stack, its saved context and XSAVE area, and the request it runs.
pub struct GreenThread {
    /// Saved registers while not running (first field: one aligned cache line).
    pub ctx: Context,
    stack: Stack,
    /// Where the preemption entry saves its extended state (`save_area`).
    save: SaveArea,
    /// The running request was marked long by `feedback_start()`.
    pub long: bool,
    /// Between `feedback_start()` and `feedback_finished()`: the transport was told that this
    /// thread's worker runs a long request (`Transport::long_request`), and is told again at
    /// each preemption and resumption.
    pub long_section: bool,
    /// The running request is under the timer core's watch (re-armed after each preemption).
    pub timed: bool,
    /// The running request is inside a preemptible region: the application accepted that its
    /// code may migrate between OS threads here (see the crate docs), so interrupts and yields
    /// may park it. Outside one, nothing parks it.
    pub region: bool,
    /// The running request's green-thread-local values, dropped when it ends.
    pub locals: GreenLocals,
    /// When the current request was scheduled (runtime clock, ns).
    pub started_ns: u64,
    /// The current request's kind and arrival (runtime clock, ns): Shinjuku's dispatcher queues
    /// a preempted request by them.
    pub kind: u32,
    /// When the request it runs arrived (ns, the runtime's clock).
    pub arrival_ns: u64,
    /// The current request's session (`flow`), set under overload control: its reply's grant
    /// and its end are counted for CoreSync's coupling.
    pub flow: u32,
    /// How often the current request was preempted or yielded.
    pub preemptions: u32,
    /// The current request's id (for the stack-overflow report; see `local::PreemptState`).
    pub request_id: u64,
    /// The current request was answered by its handler (`send`): a second reply is refused, and
    /// the runtime sends none of its own.
    pub replied: bool,
    /// When it was last put on the wait queue (runtime clock, ns): its queueing delay there is
    /// measured when a worker resumes it (overload control's D_m).
    pub queued_ns: u64,
    /// The worker that parked it last (preempted, yielded or blocked there).
    pub parked_on: usize,
    /// The running request is a cooperative long one (`feedback_start_cooperative`): it is
    /// parked only at its probes and resumes only on the worker that parked it.
    pub cooperative: bool,
}

impl GreenThread {
    /// A thread with a stack of `stack_size` usable bytes, an XSAVE area of `save_bytes` (the
    /// preemption entry's, `preempt::entry::xsave_size`), starting at `entry`.
    pub fn new(stack_size: usize, save_bytes: usize, entry: extern "C" fn() -> !) -> io::Result<Box<GreenThread>> {
        let stack = Stack::new(stack_size)?;
        let save = SaveArea::new(save_bytes)?;
        let ctx = Context::new(stack.top(), entry);
        Ok(Box::new(GreenThread {
            ctx,
            stack,
            save,
            long: false,
            long_section: false,
            timed: false,
            region: false,
            queued_ns: 0,
            parked_on: 0,
            cooperative: false,
            locals: GreenLocals::default(),
            started_ns: 0,
            kind: 0,
            arrival_ns: 0,
            flow: 0,
            preemptions: 0,
            replied: false,
            request_id: 0,
        }))
    }

    /// Makes the thread start afresh at `entry` next time it is switched to.
    pub fn reset(&mut self, entry: extern "C" fn() -> !) {
        self.ctx = Context::new(self.stack.top(), entry);
        self.long = false;
        self.long_section = false;
        self.timed = false;
        self.region = false;
        self.preemptions = 0;
        debug_assert!(self.locals.is_empty(), "green-thread-local values outlived their request");
    }

    /// Its stack.
    pub fn stack(&self) -> &Stack {
        &self.stack
    }

    /// The address of its XSAVE area (0 if it has none).
    pub fn save_area(&self) -> u64 {
        self.save.addr()
    }
}

/// A preempted (or yielding) request's green thread, handed between workers through the queues.
/// Only the runtime makes one; a scheduling policy moves them between its queues (`policy::api`).
pub struct ThreadPtr(pub(crate) *mut GreenThread);

// SAFETY: a parked thread is owned by whoever holds its ThreadPtr; exactly one worker dequeues
// it and only then runs it, so ownership moves between OS threads, never sharing.
unsafe impl Send for ThreadPtr {}
