// A trait method without a body has nothing to instrument.
trait Handler {
    #[synergy_macros::preemptible]
    fn handle(&self, x: u64) -> u64;
}

fn main() {}
