//! `#[synergy::preemptible]`: instruments a function for compiler interrupts (`--preempt=ci` and
//! the hybrids) the way Concord's compiler pass does, with a probe (`synergy::preempt_point()`)
//! at function entry and at the top of every loop body (`loop`, `while`, `for`), including nested
//! loops and loops in closures defined inside the function. `#[synergy::preemptible(every = N)]`
//! probes a loop once every N iterations instead (for very tight loops; each loop keeps its own
//! countdown).
//!
//! What is not instrumented: functions it calls (annotate them too), items defined inside the
//! body (nested `fn`s), and code inside macro invocations (`vec![..]`, `println!(..)`), whose
//! tokens the attribute cannot see as loops. The runtime re-exports the attribute as
//! `synergy::preemptible`; the generated code calls `::synergy::preempt_point`.

#![deny(missing_docs)]

mod expand;

use proc_macro::TokenStream;

/// Inserts compiler-interrupt probes into a function; see the crate docs.
#[proc_macro_attribute]
pub fn preemptible(attr: TokenStream, item: TokenStream) -> TokenStream {
    match expand::expand(attr.into(), item.into()) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}
