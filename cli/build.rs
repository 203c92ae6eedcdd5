//! With the `leveldb` feature: exports synergy-interpose's shims from the `synergy` binary, so
//! that libleveldb's pthread_mutex_* and malloc calls bind to them (synergy-interpose's docs).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_LEVELDB").is_some() {
        let symbols = std::env::var("DEP_SYNERGY_INTERPOSE_SYMBOLS").expect("synergy-interpose lists its symbols");
        for sym in symbols.split(',') {
            println!("cargo:rustc-link-arg-bins=-Wl,--export-dynamic-symbol={sym}");
        }
    }
}
