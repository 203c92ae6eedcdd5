// The attribute on a struct: it instruments functions only.
#[synergy_macros::preemptible]
struct Request {
    id: u64,
}

fn main() {}
