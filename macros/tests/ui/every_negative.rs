// `every` is a count of iterations: a negative one is refused.
#[synergy_macros::preemptible(every = -4)]
fn sum(v: &[u64]) -> u64 {
    v.iter().sum()
}

fn main() {}
