//! A preempting runtime refuses to start unless the application installed
//! `synergy::PreemptSafeAlloc` as its global allocator (this test binary does not), and says how.

use std::sync::Arc;
use synergy::transport::channel::ChannelTransport;
use synergy::{Config, PreemptMode, Runtime, StartError};

#[test]
fn preemption_without_the_runtime_allocator_is_refused_with_instructions() {
    let cfg = Config { preempt: PreemptMode::Signal, pin: false, ..Config::default() };
    let transport = Arc::new(ChannelTransport::new(1, 16, 16));
    let err = Runtime::builder(&cfg)
        .transport(transport)
        .handler(|_| {})
        .start()
        .err()
        .expect("start must fail without PreemptSafeAlloc");
    assert!(matches!(err, StartError::Allocator), "{err}");
    let text = err.to_string();
    assert!(text.contains("#[global_allocator]") && text.contains("synergy::PreemptSafeAlloc"), "{text}");
    assert!(!synergy::alloc::is_installed());

    // Without preemption nothing can be preempted inside malloc: the system allocator will do.
    let cfg = Config { preempt: PreemptMode::None, pin: false, ..Config::default() };
    let transport = Arc::new(ChannelTransport::new(1, 16, 16));
    let rt = Runtime::builder(&cfg)
        .transport(transport.clone())
        .handler(|_| {})
        .start()
        .expect("--preempt=none needs no allocator");
    transport.close();
    rt.shutdown();
}
