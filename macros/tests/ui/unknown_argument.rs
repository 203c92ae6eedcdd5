// The attribute takes nothing or `every = N`.
#[synergy_macros::preemptible(quantum = 5)]
fn sum(v: &[u64]) -> u64 {
    v.iter().sum()
}

fn main() {}
