// `every` takes an integer literal, not a string or an expression.
#[synergy_macros::preemptible(every = "64")]
fn sum(v: &[u64]) -> u64 {
    v.iter().sum()
}

fn main() {}
