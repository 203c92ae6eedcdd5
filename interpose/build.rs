//! Exports the shims from this crate's own test binaries, and hands the list of symbols to the
//! build scripts of the crates that depend on this one (`DEP_SYNERGY_INTERPOSE_SYMBOLS`), which
//! export them from the binaries that opt in (see src/lib.rs).

fn main() {
    println!("cargo:rerun-if-changed=src/exported.txt");
    let list = std::fs::read_to_string("src/exported.txt").expect("src/exported.txt");
    let symbols: Vec<&str> = list.lines().filter(|l| !l.is_empty()).collect();
    // Plain `rustc-link-arg` reaches only this package's own linked artifacts: its tests.
    for sym in &symbols {
        println!("cargo:rustc-link-arg=-Wl,--export-dynamic-symbol={sym}");
    }
    println!("cargo:symbols={}", symbols.join(","));
}
