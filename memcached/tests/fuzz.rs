//! A mutation fuzzer for the text and meta protocol (issue 42, bad input): inputs built from the
//! protocol's grammar (every command, with keys, numbers and data lengths drawn to hit the edges:
//! 250/251-byte keys, 2^64 - 1 and 2^64, negative and huge exptimes, data blocks shorter and
//! longer than declared, meta flags valid and not) and then mutated (byte flips, truncation,
//! duplication, inserted line ends and spaces, digits replaced), fed as one connection's byte
//! stream through `text::frame` and `text::parse` into `handle` on one store.
//!
//! Checked for every input: no panic; every frame consumes at least one byte and no more than
//! it was given (so a connection always progresses); every reply is empty (silenced by
//! `noreply`, or a hang-up) or ends with `\r\n`; the store never holds more than its memory
//! limit. CI runs `SYNERGY_FUZZ_INPUTS` (default 200,000)
//! inputs; the long run's count and the process's peak RSS are in docs/memcached.md.
//!
//! Why not cargo-fuzz: it needs a nightly toolchain (`-Zsanitizer`), and this project builds on
//! the one stable toolchain its machines have; the generator below is deterministic (a seed per
//! input), so any failure reproduces from the input number it prints.

use synergy::request::Request;
use synergy::Body;
use synergy_memcached::store::Store;
use synergy_memcached::text::{self, Framed};

use synergy_memcached::loadgen::Rng;

/// Draws on top of the workloads' splitmix64.
trait Draw {
    fn below(&mut self, n: u64) -> u64;
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str;
}

impl Draw for Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
}

fn key(r: &mut Rng) -> String {
    match r.below(10) {
        0 => "k".repeat(250),
        1 => "k".repeat(251),
        2 => String::new(),
        3 => "ké\u{0}y".into(),
        _ => format!("k{}", r.below(100_000)),
    }
}

fn number(r: &mut Rng) -> String {
    if r.below(10) < 6 {
        return r.below(1000).to_string();
    }
    r.pick(&[
        "0",
        "1",
        "-1",
        "42",
        "2592000",
        "2592001",
        "18446744073709551615",
        "18446744073709551616",
        "99999999999999999999999",
        "abc",
        "1x",
        "",
        "4294967295",
        "4294967296",
    ])
    .to_string()
}

/// One command of the protocol, plausible or nearly so.
fn command(r: &mut Rng) -> Vec<u8> {
    let noreply = if r.below(4) == 0 { " noreply" } else { "" };
    match r.below(16) {
        0..=3 => {
            let op = r.pick(&["set", "add", "replace", "append", "prepend", "cas"]);
            // Now and then a value large enough that the store's limit makes it evict.
            let len = if r.below(100) == 0 { 100_000 } else { r.below(40) as usize };
            let declared = match r.below(6) {
                0 => len + 1,
                1 => len.saturating_sub(1),
                2 => 2_000_000,
                _ => len,
            };
            let cas = if op == "cas" { format!(" {}", number(r)) } else { String::new() };
            let data: Vec<u8> = (0..len).map(|_| r.below(256) as u8).collect();
            let mut m =
                format!("{op} {} {} {} {declared}{cas}{noreply}\r\n", key(r), number(r), number(r)).into_bytes();
            m.extend_from_slice(&data);
            m.extend_from_slice(if r.below(5) == 0 { b"\n" } else { b"\r\n" });
            m
        }
        4..=5 => {
            let op = r.pick(&["get", "gets", "gat", "gats"]);
            let ttl = if op.starts_with("gat") { format!(" {}", number(r)) } else { String::new() };
            let n = if r.below(4) == 0 { 17 + r.below(30) } else { r.below(4) };
            let keys: Vec<String> = (0..n).map(|_| key(r)).collect();
            format!("{op}{ttl} {}\r\n", keys.join(" ")).into_bytes()
        }
        6 => format!("delete {}{}{noreply}\r\n", key(r), if r.below(3) == 0 { " 0" } else { "" }).into_bytes(),
        7 => format!("{} {} {}{noreply}\r\n", r.pick(&["incr", "decr"]), key(r), number(r)).into_bytes(),
        8 => format!("touch {} {}{noreply}\r\n", key(r), number(r)).into_bytes(),
        9 if r.below(16) == 0 => {
            format!("flush_all {}{noreply}\r\n", if r.below(2) == 0 { number(r) } else { String::new() }).into_bytes()
        }
        9 | 10 => r
            .pick(&[
                "version\r\n",
                "verbosity 1\r\n",
                "stats\r\n",
                "stats settings\r\n",
                "stats detail dump\r\n",
                "mn\r\n",
            ])
            .as_bytes()
            .to_vec(),
        11..=13 => {
            let op = r.pick(&["mg", "ms", "md", "ma", "me"]);
            let flags: Vec<&str> = (0..r.below(6))
                .map(|_| {
                    r.pick(&[
                        "v", "k", "f", "c", "s", "t", "q", "O123", "T30", "F5", "C1", "MA", "MP", "MR", "MI", "MD",
                        "D2", "N5", "zz", "I", "T-1", "N0", "R30", "h", "l", "u", "b", "J7", "C0", "ME", "MS", "M",
                        "Dx", "P", "L",
                    ])
                })
                .collect();
            if op == "ms" {
                let len = r.below(20) as usize;
                let declared = if r.below(5) == 0 { len + 3 } else { len };
                let mut m = format!("ms {} {declared} {}\r\n", key(r), flags.join(" ")).into_bytes();
                m.extend((0..len).map(|_| b'a' + r.below(26) as u8));
                m.extend_from_slice(b"\r\n");
                m
            } else {
                format!("{op} {} {}\r\n", key(r), flags.join(" ")).into_bytes()
            }
        }
        14 => (0..r.below(64)).map(|_| r.below(256) as u8).collect(),
        _ => r.pick(&["quit\r\n", "\u{80}binary", "bogus\r\n", "\r\n", " \r\n", "GET a\r\n"]).as_bytes().to_vec(),
    }
}

/// Mutates `m` in place: half the commands as they are, the others 1-3 times.
fn mutate(r: &mut Rng, m: &mut Vec<u8>) {
    if r.below(2) == 0 {
        return;
    }
    for _ in 0..1 + r.below(3) {
        if m.is_empty() {
            return;
        }
        let at = r.below(m.len() as u64) as usize;
        match r.below(6) {
            0 => m[at] ^= 1 << r.below(8),
            1 => m.truncate(at),
            2 => {
                let tail = m[at..].to_vec();
                m.extend_from_slice(&tail);
            }
            3 => m.insert(at, b'\n'),
            4 => m.insert(at, b' '),
            _ => {
                if m[at].is_ascii_digit() {
                    m[at] = b'0' + r.below(10) as u8;
                }
            }
        }
    }
}

/// What the frames of all inputs were: messages handled, protocol answers, incomplete tails,
/// quits and fatal errors.
#[derive(Default, Debug)]
struct Outcomes {
    handled: u64,
    answered: u64,
    incomplete: u64,
    quit: u64,
    fatal: u64,
}

/// Feeds `stream` as one connection's bytes; checks every frame and reply.
fn feed(store: &Store, stream: &[u8], max_value: usize, input: u64, o: &mut Outcomes) {
    let mut at = 0;
    while at < stream.len() {
        let rest = &stream[at..];
        let consumed = match text::frame(rest, max_value) {
            Framed::Incomplete => {
                o.incomplete += 1;
                return;
            }
            Framed::Quit { consumed } => {
                o.quit += 1;
                assert!(consumed >= 1 && consumed <= rest.len(), "input {input}: quit consumed {consumed}");
                return;
            }
            Framed::Fatal { reply } => {
                o.fatal += 1;
                // Empty: hung up on without a word (an HTTP request line).
                assert!(reply.is_empty() || reply.ends_with(b"\r\n"), "input {input}");
                return;
            }
            Framed::Answer { reply, consumed } => {
                o.answered += 1;
                // Empty: an error silenced by `noreply`.
                assert!(reply.is_empty() || reply.ends_with(b"\r\n"), "input {input}: {reply:?}");
                consumed
            }
            Framed::Message { kind, len } => {
                o.handled += 1;
                let req = Request { kind, body: Body::from_slice(&rest[..len]), ..Request::default() };
                let mut out = Body::with_capacity(64);
                synergy_memcached::handle(store, &req, max_value, &mut out);
                assert!(
                    out.is_empty() || out.ends_with(b"\r\n"),
                    "input {input}: reply {:?} to {:?}",
                    String::from_utf8_lossy(&out[..out.len().min(200)]),
                    String::from_utf8_lossy(&rest[..len.min(200)])
                );
                len
            }
        };
        assert!(consumed >= 1 && consumed <= rest.len(), "input {input}: consumed {consumed} of {}", rest.len());
        at += consumed;
    }
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn the_parser_survives_mutated_protocol_streams() {
    let inputs: u64 = std::env::var("SYNERGY_FUZZ_INPUTS").map_or(200_000, |v| v.parse().expect("a count"));
    let limit = 4 << 20;
    let store = Store::new(limit);
    let max_value = 1_048_576 - 48;
    let t0 = std::time::Instant::now();
    let mut o = Outcomes::default();
    let mut stored = 0u64;
    for input in 0..inputs {
        let mut r = Rng::new(input.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0xF022);
        let mut stream = Vec::new();
        for _ in 0..1 + r.below(4) {
            let mut m = command(&mut r);
            mutate(&mut r, &mut m);
            stream.extend_from_slice(&m);
        }
        feed(&store, &stream, max_value, input, &mut o);
        let (items, bytes) = store.usage();
        stored = stored.max(items);
        assert!(bytes <= limit as u64, "input {input}: the store holds {bytes} bytes over its {limit}-byte limit");
    }
    eprintln!(
        "fuzz: {inputs} inputs, no failure, {:.1} s, peak RSS {} KiB, at most {stored} items stored; {o:?}",
        t0.elapsed().as_secs_f64(),
        peak_rss_kib(),
    );
    // The generator reaches the handler and the store, not only the framing's error paths.
    assert!(o.handled > inputs / 2 && o.answered > inputs / 20 && stored > 50, "{o:?}, {stored} items");
}
