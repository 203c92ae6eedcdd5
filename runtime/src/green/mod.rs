//! Green threads: a 64-byte context switched by hand-written asm, on pooled, guarded stacks.

pub(crate) mod alt_stack;
pub mod context;
pub mod locals;
pub mod save_area;
pub mod stack;
pub mod thread;

pub use context::Context;
pub use stack::Stack;
pub use thread::GreenThread;
