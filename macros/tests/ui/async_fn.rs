// A probe parks the green thread that polls a future, with the executor on its stack.
#[synergy_macros::preemptible]
async fn handler(x: u64) -> u64 {
    x
}

fn main() {}
