// A loop cannot probe every 0 iterations.
#[synergy_macros::preemptible(every = 0)]
fn sum(v: &[u64]) -> u64 {
    let mut s = 0;
    for x in v {
        s += x;
    }
    s
}

fn main() {}
