// Two counts for the same loops are ambiguous.
#[synergy_macros::preemptible(every = 8, every = 16)]
fn sum(v: &[u64]) -> u64 {
    v.iter().sum()
}

fn main() {}
