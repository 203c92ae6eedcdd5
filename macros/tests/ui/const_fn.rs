// A probe is not const: a `const fn` cannot be instrumented.
#[synergy_macros::preemptible]
const fn checksum(x: u64) -> u64 {
    x ^ 0x5a
}

fn main() {}
