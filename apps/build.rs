//! With the `leveldb` feature: exports synergy-interpose's shims from this package's test
//! binaries, which run LevelDB (a binary that serves LevelDB does the same in its own build.rs).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_LEVELDB").is_some() {
        let symbols = std::env::var("DEP_SYNERGY_INTERPOSE_SYMBOLS").expect("synergy-interpose lists its symbols");
        for sym in symbols.split(',') {
            println!("cargo:rustc-link-arg-tests=-Wl,--export-dynamic-symbol={sym}");
        }
    }
}
