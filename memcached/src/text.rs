//! memcached's text protocol, as memcached 1.6 parses it: command lines, data blocks, and the
//! errors it answers (checked byte for byte against Debian's memcached by
//! `tests/differential.rs`).
//!
//! [`frame`] finds where one message ends (a line, plus a data block for the storage commands)
//! and answers what is wrong with it; [`parse`] turns a well-formed message into a [`Command`]
//! borrowing its keys and data. The codec ([`TextCodec`]) passes the message's bytes to the
//! handler as the request body, and the handler parses them again: parsing a line costs far less
//! than copying a value twice.

use synergy::request::{Reply, Request};
use synergy_net::stream::{Codec, CodecError, Frame};

/// Longest key memcached accepts.
pub const KEY_MAX: usize = 250;
/// memcached's relative-expiry horizon: larger exptimes are absolute Unix times.
pub const REALTIME_MAXDELTA: i64 = 60 * 60 * 24 * 30;
/// A command line longer than this without its end is refused (memcached: 2048 for most).
pub const LINE_MAX: usize = 2048;
/// Data blocks declared above this are refused with an error and the connection is closed
/// (memcached would swallow them; see docs/memcached.md).
pub const DECLARED_MAX: usize = 64 << 20;

/// Request kinds (what the scheduler and the statistics see).
pub mod kind {
    /// A get of up to `LONG_GET_KEYS` keys, and `mg`: short.
    pub const GET: u32 = 0;
    /// A multi-key get over `LONG_GET_KEYS` keys: long, preemptible.
    pub const LONG_GET: u32 = 1;
    /// A storage command (`set`, `add`, ..., `ms`).
    pub const STORE: u32 = 2;
    /// `delete`, `md`.
    pub const DELETE: u32 = 3;
    /// `incr`, `decr`, `ma`.
    pub const ARITH: u32 = 4;
    /// `touch`.
    pub const TOUCH: u32 = 5;
    /// Everything else (`stats`, `version`, `flush_all`, `mn`, `me`, ...).
    pub const OTHER: u32 = 6;
    /// A storage command whose value is over the item size limit (the value was skipped).
    pub const TOO_LARGE: u32 = 7;
}

/// A get with more keys than this is a long request (preemptible): memcached users know
/// multi-gets of hundreds of keys as what holds a connection up.
pub const LONG_GET_KEYS: usize = 16;

/// Which storage command (the meta protocol's `ms` modes map onto the same ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOp {
    /// Store whatever is there.
    Set,
    /// Store only if nothing live is there.
    Add,
    /// Store only if something live is there.
    Replace,
    /// Add the data after the live value (its flags and expiry kept).
    Append,
    /// Add the data before the live value.
    Prepend,
    /// Store only if the live item's CAS unique is the one given.
    Cas,
}

/// One parsed command, borrowing from the message.
#[derive(Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// `get`, `gets`, `gat`, `gats`.
    Get {
        /// The keys, in the order asked.
        keys: Vec<&'a [u8]>,
        /// `gets`/`gats`: answer each item's CAS unique too.
        cas: bool,
        /// `gat`/`gats`: the new exptime for each item found.
        touch: Option<i64>,
    },
    /// `set`, `add`, `replace`, `append`, `prepend`, `cas`.
    Store {
        /// Which of them.
        op: StoreOp,
        /// The key.
        key: &'a [u8],
        /// The client's flags, stored with the value.
        flags: u32,
        /// memcached's exptime (see `Store::expiry`).
        exptime: i64,
        /// The data block, without its "\r\n".
        data: &'a [u8],
        /// `cas`'s unique (0 for the others).
        cas: u64,
        /// Answer nothing.
        noreply: bool,
    },
    /// A storage command whose value was too large: skipped; a SET also drops the old value.
    TooLarge {
        /// Which storage command.
        op: StoreOp,
        /// The key.
        key: &'a [u8],
    },
    /// `delete <key> [0] [noreply]`.
    Delete {
        /// The key.
        key: &'a [u8],
        /// Answer nothing.
        noreply: bool,
    },
    /// `incr`, `decr`.
    Arith {
        /// `incr` (else `decr`).
        incr: bool,
        /// The key.
        key: &'a [u8],
        /// What to add or take away.
        delta: u64,
        /// Answer nothing.
        noreply: bool,
    },
    /// `touch <key> <exptime> [noreply]`.
    Touch {
        /// The key.
        key: &'a [u8],
        /// The new exptime.
        exptime: i64,
        /// Answer nothing.
        noreply: bool,
    },
    /// `flush_all [delay] [noreply]`.
    FlushAll {
        /// Seconds until the flush takes effect (0: now).
        delay: i64,
        /// Answer nothing.
        noreply: bool,
    },
    /// `version`.
    Version,
    /// `verbosity <level> [noreply]` (acknowledged; there is no verbose output to set).
    Verbosity {
        /// Answer nothing.
        noreply: bool,
    },
    /// `stats [group]`.
    Stats {
        /// The group (`settings`, `slabs`, `items`, `sizes`, `reset`, `detail`), if any.
        arg: Option<&'a [u8]>,
        /// `stats detail on|off|dump`'s third token.
        detail: Option<&'a [u8]>,
    },
    /// The meta protocol's no-op, `mn`. The other meta commands carry the key token and their
    /// flag tokens (each a letter and its argument, in the order given: replies echo them in
    /// that order); `meta::preparse` reads them.
    MetaNoop,
    /// `mg <key> <flags>*`.
    MetaGet {
        /// The key token (base64 under the `b` flag).
        key: &'a [u8],
        /// The flag tokens.
        flags: Vec<&'a [u8]>,
    },
    /// `me <key> [b]`.
    MetaDebug {
        /// The key token.
        key: &'a [u8],
        /// The tokens after the key (`b`).
        flags: Vec<&'a [u8]>,
    },
    /// `ms <key> <datalen> <flags>*` and its data block.
    MetaSet {
        /// The key token.
        key: &'a [u8],
        /// The data block, without its "\r\n".
        data: &'a [u8],
        /// The flag tokens.
        flags: Vec<&'a [u8]>,
    },
    /// `md <key> <flags>*`.
    MetaDelete {
        /// The key token.
        key: &'a [u8],
        /// The flag tokens.
        flags: Vec<&'a [u8]>,
    },
    /// `ma <key> <flags>*`.
    MetaArith {
        /// The key token.
        key: &'a [u8],
        /// The flag tokens.
        flags: Vec<&'a [u8]>,
    },
}

/// What `frame` found at the start of a connection's bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Framed {
    /// Not a whole message yet.
    Incomplete,
    /// A message of `len` bytes for the handler, of kind `kind`.
    Message {
        /// Its `kind::*`.
        kind: u32,
        /// Its bytes, data block included.
        len: usize,
    },
    /// `consumed` bytes answered with `reply` by the protocol alone.
    Answer {
        /// The answer (may be empty: an error silenced by `noreply`).
        reply: &'static [u8],
        /// The bytes it answers.
        consumed: usize,
    },
    /// `quit`.
    Quit {
        /// The line's bytes.
        consumed: usize,
    },
    /// An error after which memcached closes the connection.
    Fatal {
        /// What is written before the close (may be empty: a hang-up).
        reply: &'static [u8],
    },
}

const ERROR: &[u8] = b"ERROR\r\n";
const BAD_FORMAT: &[u8] = b"CLIENT_ERROR bad command line format\r\n";
const BAD_CHUNK: &[u8] = b"CLIENT_ERROR bad data chunk\r\n";
const LINE_TOO_LONG: &[u8] = b"CLIENT_ERROR line too long\r\n";
const DELETE_USAGE: &[u8] = b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n";
const DELTA: &[u8] = b"CLIENT_ERROR invalid numeric delta argument\r\n";

fn tokens(line: &[u8]) -> Vec<&[u8]> {
    line.split(|&b| b == b' ').filter(|t| !t.is_empty()).collect()
}

fn num<T: std::str::FromStr>(t: &[u8]) -> Option<T> {
    std::str::from_utf8(t).ok()?.parse().ok()
}

/// memcached's `safe_strtol`: a decimal that fits a C `long` (64 bits here), then stored into
/// an `int32_t`, truncated as C truncates (4294967295 becomes -1, 4294967297 becomes 1).
fn strtol32(t: &[u8]) -> Option<i32> {
    num::<i64>(t).map(|l| l as i32)
}

/// The line at the start of `buf` (without `\r\n` or `\n`) and its length with the end.
fn line(buf: &[u8]) -> Option<(&[u8], usize)> {
    let end = buf.iter().position(|&b| b == b'\n')?;
    Some((buf[..end].strip_suffix(b"\r").unwrap_or(&buf[..end]), end + 1))
}

fn store_op(cmd: &[u8]) -> Option<StoreOp> {
    Some(match cmd {
        b"set" => StoreOp::Set,
        b"add" => StoreOp::Add,
        b"replace" => StoreOp::Replace,
        b"append" => StoreOp::Append,
        b"prepend" => StoreOp::Prepend,
        b"cas" => StoreOp::Cas,
        _ => return None,
    })
}

/// Where the first message of `buf` ends, or what the protocol answers; `max_value` is the
/// largest value stored.
pub fn frame(buf: &[u8], max_value: usize) -> Framed {
    if buf.first() == Some(&0x80) {
        // The binary protocol's request magic: deprecated upstream, not served here.
        return Framed::Fatal {
            reply: b"SERVER_ERROR the binary protocol is not supported; use the text protocol\r\n",
        };
    }
    let Some((l, n)) = line(buf) else {
        // As memcached: a line still without its end past LINE_MAX can only be a large multi-get
        // (a `get`/`gets` after at most 100 spaces), read on until its end comes; anything else
        // is hung up on. A multi-get's line arrives in pieces over TCP whenever the server reads
        // before the client has written all of it.
        let spaces = buf.iter().take_while(|&&b| b == b' ').count();
        let multi_get = spaces <= 100 && (buf[spaces..].starts_with(b"get ") || buf[spaces..].starts_with(b"gets "));
        if buf.len() > LINE_MAX && !(multi_get && buf.len() <= DECLARED_MAX) {
            return Framed::Fatal { reply: LINE_TOO_LONG };
        }
        return Framed::Incomplete;
    };
    let t = tokens(l);
    let answer = |reply| Framed::Answer { reply, consumed: n };
    let Some(&cmd) = t.first() else { return answer(ERROR) };
    if let Some(op) = store_op(cmd) {
        let want = if op == StoreOp::Cas { 6 } else { 5 };
        if t.len() != want && !(t.len() == want + 1 && t[want] == b"noreply") {
            return answer(ERROR);
        }
        if t[1].len() > KEY_MAX {
            return answer(BAD_FORMAT);
        }
        let (Some(_), Some(_), Some(bytes)) = (num::<u32>(t[2]), strtol32(t[3]), strtol32(t[4])) else {
            return answer(BAD_FORMAT);
        };
        if op == StoreOp::Cas && num::<u64>(t[5]).is_none() {
            return answer(BAD_FORMAT);
        }
        // memcached: `vlen < 0 || vlen > INT_MAX - 2` (after the truncation above, so
        // 4294967295 is -1) is a format error, and the connection goes on without a data block.
        if !(0..=i32::MAX - 2).contains(&bytes) {
            return answer(BAD_FORMAT);
        }
        let bytes = bytes as usize;
        if bytes > DECLARED_MAX {
            return Framed::Fatal { reply: b"SERVER_ERROR object too large for cache\r\n" };
        }
        if buf.len() < n + bytes + 2 {
            return Framed::Incomplete;
        }
        if bytes > max_value {
            return Framed::Message { kind: kind::TOO_LARGE, len: n + bytes + 2 };
        }
        if &buf[n + bytes..n + bytes + 2] != b"\r\n" {
            return Framed::Answer { reply: BAD_CHUNK, consumed: n + bytes + 2 };
        }
        return Framed::Message { kind: kind::STORE, len: n + bytes + 2 };
    }
    if matches!(cmd, b"mg" | b"ms" | b"md" | b"ma" | b"me") {
        let swallowed = if cmd == b"ms" { t.get(2).and_then(|l| strtol32(l)).map(|len| len as usize) } else { None };
        if let Some((reply, swallow)) = crate::meta::check(&t) {
            let Some(bytes) = swallowed.filter(|_| swallow) else { return answer(reply) };
            // memcached swallows the data block after an error found once its length was read.
            if bytes > DECLARED_MAX {
                return Framed::Fatal { reply: b"SERVER_ERROR object too large for cache\r\n" };
            }
            if buf.len() < n + bytes + 2 {
                return Framed::Incomplete;
            }
            return Framed::Answer { reply, consumed: n + bytes + 2 };
        }
        let kind = match cmd {
            b"mg" => kind::GET,
            b"md" => kind::DELETE,
            b"ma" => kind::ARITH,
            b"me" => kind::OTHER,
            _ => kind::STORE,
        };
        let Some(bytes) = swallowed else { return Framed::Message { kind, len: n } };
        if bytes > DECLARED_MAX {
            return Framed::Fatal { reply: b"SERVER_ERROR object too large for cache\r\n" };
        }
        if buf.len() < n + bytes + 2 {
            return Framed::Incomplete;
        }
        if bytes > max_value {
            return Framed::Answer { reply: b"SERVER_ERROR object too large for cache\r\n", consumed: n + bytes + 2 };
        }
        if &buf[n + bytes..n + bytes + 2] != b"\r\n" {
            return Framed::Answer { reply: BAD_CHUNK, consumed: n + bytes + 2 };
        }
        return Framed::Message { kind: kind::STORE, len: n + bytes + 2 };
    }
    let noreply_ok = |len: usize| t.len() == len || (t.len() == len + 1 && t[len] == b"noreply");
    let keys_ok = |ks: &[&[u8]]| ks.iter().all(|k| k.len() <= KEY_MAX);
    match cmd {
        b"get" | b"gets" => match t.len() {
            1 => answer(ERROR),
            _ if !keys_ok(&t[1..]) => answer(BAD_FORMAT),
            k if k - 1 > LONG_GET_KEYS => Framed::Message { kind: kind::LONG_GET, len: n },
            _ => Framed::Message { kind: kind::GET, len: n },
        },
        b"gat" | b"gats" => match t.len() {
            0..=2 => answer(ERROR),
            _ if strtol32(t[1]).is_none() => answer(b"CLIENT_ERROR invalid exptime argument\r\n"),
            _ if !keys_ok(&t[2..]) => answer(BAD_FORMAT),
            _ => Framed::Message { kind: kind::GET, len: n },
        },
        b"delete" => {
            if t.len() < 2 || t.len() > 4 {
                return answer(ERROR);
            }
            if t[1].len() > KEY_MAX {
                return answer(BAD_FORMAT);
            }
            let rest = &t[2..];
            let ok = match rest {
                [] => true,
                [x] => *x == b"noreply" || *x == b"0",
                [z, r] => *z == b"0" && *r == b"noreply",
                _ => false,
            };
            if ok {
                Framed::Message { kind: kind::DELETE, len: n }
            } else if rest.last() == Some(&&b"noreply"[..]) {
                // memcached sets `noreply` before it checks the line, so the usage error is
                // silent too (its t/issue_3.t).
                answer(b"")
            } else {
                answer(DELETE_USAGE)
            }
        }
        b"incr" | b"decr" => {
            if !noreply_ok(3) {
                return answer(ERROR);
            }
            if t[1].len() > KEY_MAX {
                return answer(BAD_FORMAT);
            }
            if !t[2].iter().all(u8::is_ascii_digit) || num::<u64>(t[2]).is_none() {
                return answer(DELTA);
            }
            Framed::Message { kind: kind::ARITH, len: n }
        }
        b"touch" => {
            if !noreply_ok(3) {
                return answer(ERROR);
            }
            if t[1].len() > KEY_MAX {
                return answer(BAD_FORMAT);
            }
            if strtol32(t[2]).is_none() {
                return answer(b"CLIENT_ERROR invalid exptime argument\r\n");
            }
            Framed::Message { kind: kind::TOUCH, len: n }
        }
        b"flush_all" => {
            // memcached 1.6.18: a delay that is not a number is a client error (silent with
            // `noreply`); more tokens than `delay noreply` are an unknown command.
            let (delay, noreply) = match &t[1..] {
                [] => (None, false),
                [x] if *x == b"noreply" => (None, true),
                [d] => (Some(*d), false),
                [d, r] if *r == b"noreply" => (Some(*d), true),
                _ => return answer(ERROR),
            };
            match delay {
                Some(d) if num::<i64>(d).is_none() => {
                    answer(if noreply { &b""[..] } else { b"CLIENT_ERROR invalid exptime argument\r\n" })
                }
                _ => Framed::Message { kind: kind::OTHER, len: n },
            }
        }
        // memcached 1.6 ignores whatever follows `version` and `quit` (memccapable sends
        // `version foo bar`).
        b"version" => Framed::Message { kind: kind::OTHER, len: n },
        b"verbosity" if (2..=3).contains(&t.len()) => Framed::Message { kind: kind::OTHER, len: n },
        b"stats" if t.len() <= 2 || (t.len() == 3 && t[1] == b"detail") => {
            Framed::Message { kind: kind::OTHER, len: n }
        }
        b"quit" => Framed::Quit { consumed: n },
        b"mn" => Framed::Message { kind: kind::OTHER, len: n },
        // What looks like an HTTP request line is hung up on without a reply, as memcached does
        // (its test t/malicious-commands.t): the last token starts with "HTTP/".
        _ if t.last().is_some_and(|l| l.starts_with(b"HTTP/")) => Framed::Fatal { reply: b"" },
        _ => answer(ERROR),
    }
}

/// The command in a whole message `frame` accepted (its `Message`).
pub fn parse(msg: &[u8], kind: u32) -> Option<Command<'_>> {
    let (l, n) = line(msg)?;
    let t = tokens(l);
    let noreply = t.last() == Some(&&b"noreply"[..]);
    if let Some(op) = store_op(t[0]) {
        if kind == kind::TOO_LARGE {
            return Some(Command::TooLarge { op, key: t[1] });
        }
        let bytes = usize::try_from(strtol32(t[4])?).ok()?;
        return Some(Command::Store {
            op,
            key: t[1],
            flags: num(t[2])?,
            exptime: strtol32(t[3])?.into(),
            data: msg.get(n..n + bytes)?,
            cas: if op == StoreOp::Cas { num(t[5])? } else { 0 },
            noreply,
        });
    }
    Some(match t[0] {
        b"mn" => Command::MetaNoop,
        b"mg" => Command::MetaGet { key: t[1], flags: t[2..].to_vec() },
        b"me" => Command::MetaDebug { key: t[1], flags: t[2..].to_vec() },
        b"md" => Command::MetaDelete { key: t[1], flags: t[2..].to_vec() },
        b"ma" => Command::MetaArith { key: t[1], flags: t[2..].to_vec() },
        b"ms" => {
            let bytes: usize = num(t[2])?;
            Command::MetaSet { key: t[1], data: msg.get(n..n + bytes)?, flags: t[3..].to_vec() }
        }
        b"get" => Command::Get { keys: t[1..].to_vec(), cas: false, touch: None },
        b"gets" => Command::Get { keys: t[1..].to_vec(), cas: true, touch: None },
        b"gat" => Command::Get { keys: t[2..].to_vec(), cas: false, touch: Some(strtol32(t[1])?.into()) },
        b"gats" => Command::Get { keys: t[2..].to_vec(), cas: true, touch: Some(strtol32(t[1])?.into()) },
        b"delete" => Command::Delete { key: t[1], noreply },
        b"incr" | b"decr" => Command::Arith { incr: t[0] == b"incr", key: t[1], delta: num(t[2])?, noreply },
        b"touch" => Command::Touch { key: t[1], exptime: strtol32(t[2])?.into(), noreply },
        b"flush_all" => {
            let delay = t.get(1).and_then(|d| num::<i64>(d)).unwrap_or(0);
            Command::FlushAll { delay, noreply }
        }
        b"version" => Command::Version,
        b"verbosity" => Command::Verbosity { noreply },
        b"stats" => Command::Stats { arg: t.get(1).copied(), detail: t.get(2).copied() },
        _ => return None,
    })
}

/// The text protocol as a stream codec: a message becomes a request whose body is the message
/// and whose kind is `kind::*`; the protocol's own answers and `quit` never reach the handler.
/// A reply's body is written as it is.
#[derive(Debug, Clone, Copy)]
pub struct TextCodec {
    /// The largest value stored (memcached's item size limit less its item header).
    pub max_value: usize,
}

impl Codec for TextCodec {
    fn decode(&self, buf: &[u8], _max_body: usize) -> Result<Option<(Frame, usize)>, CodecError> {
        Ok(Some(match frame(buf, self.max_value) {
            Framed::Incomplete => return Ok(None),
            Framed::Message { kind, len } => {
                // A value over the limit is skipped, not copied: only its line goes on.
                let body_len = if kind == kind::TOO_LARGE { line(buf).map_or(len, |(_, n)| n) } else { len };
                let body = synergy::Body::from_slice(&buf[..body_len]);
                (Frame::Request(Request { kind, body, ..Request::default() }), len)
            }
            Framed::Answer { reply, consumed } => (Frame::Answer(reply.to_vec()), consumed),
            Framed::Quit { consumed } => (Frame::Close, consumed),
            Framed::Fatal { reply } => {
                return Err(CodecError {
                    message: String::from_utf8_lossy(reply).trim().into(),
                    reply: Some(reply.to_vec()),
                })
            }
        }))
    }

    fn encode(&self, reply: &Reply, out: &mut Vec<u8>) {
        out.extend_from_slice(&reply.body);
    }
}

#[cfg(test)]
mod tests {

    /// memcached's t/malicious-commands.t: an HTTP request line is hung up on, no reply; a known
    /// command with such a token is still served.
    #[test]
    fn an_http_request_line_is_hung_up_on() {
        for line in [&b"GET / HTTP/1.0\r\n"[..], b"PUT /asdf/asd/fasdfasdf/sadf HTTP/1.1\r\n", b"DELETE HTTP/1.1\r\n"] {
            assert!(
                matches!(frame(line, 1 << 20), Framed::Fatal { reply: b"" }),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
        assert!(matches!(frame(b"get / HTTP/1.0\r\n", 1 << 20), Framed::Message { .. }));
        assert!(matches!(frame(b"bogus\r\n", 1 << 20), Framed::Answer { reply: ERROR, .. }));
    }

    use super::*;

    #[test]
    fn messages_end_where_memcached_says() {
        assert_eq!(frame(b"get a b\r\n", 100), Framed::Message { kind: kind::GET, len: 9 });
        assert_eq!(frame(b"get a", 100), Framed::Incomplete);
        // A multi-get's line longer than LINE_MAX, not all arrived yet: read on (it was hung up
        // on, which the TCP benchmark met at 115,000 requests/s as "the server closed a
        // connection"); any other line that long is refused.
        let partial = format!("get {}", (0..300).map(|i| format!("usr:{i:016}")).collect::<Vec<_>>().join(" "));
        assert!(partial.len() > LINE_MAX);
        assert_eq!(frame(partial.as_bytes(), 100), Framed::Incomplete);
        assert_eq!(frame(format!("  gets{}", &partial[3..]).as_bytes(), 100), Framed::Incomplete);
        let whole = format!("{partial}\r\n");
        assert!(matches!(frame(whole.as_bytes(), 100), Framed::Message { kind: kind::LONG_GET, .. }));
        assert_eq!(frame(format!("set{}", &partial[3..]).as_bytes(), 100), Framed::Fatal { reply: LINE_TOO_LONG });
        assert_eq!(frame(b"set k 1 2 3\r\nabc\r\nget", 100), Framed::Message { kind: kind::STORE, len: 18 });
        assert_eq!(frame(b"set k 1 2 3\r\nab", 100), Framed::Incomplete);
        assert_eq!(frame(b"set k 1 2 3\r\nabcd\r\n", 100), Framed::Answer { reply: BAD_CHUNK, consumed: 18 });
        assert_eq!(frame(b"set k 1 2 300\r\n", 100), Framed::Incomplete);
        assert_eq!(frame(b"bogus\r\n", 100), Framed::Answer { reply: ERROR, consumed: 7 });
        assert_eq!(frame(b"SET a 0 0 1\r\n", 100), Framed::Answer { reply: ERROR, consumed: 13 });
        assert_eq!(frame(b"set x 0 0 -1\r\n", 100), Framed::Answer { reply: BAD_FORMAT, consumed: 14 });
        assert_eq!(frame(b"delete k 5\r\n", 100), Framed::Answer { reply: DELETE_USAGE, consumed: 12 });
        assert_eq!(frame(b"delete k 5 noreply\r\n", 100), Framed::Answer { reply: b"", consumed: 20 });
        // memcached's t/issue_70.t: a length that is negative as an int32_t, or leaves no room
        // for the "\r\n", is a format error with no data block to swallow.
        for line in [&b"set k 0 0 4294967295\r\n"[..], b"set k 0 0 2147483647\r\nabc", b"set k 0 0 -1\r\n"] {
            let consumed = line.iter().position(|&b| b == b'\n').unwrap() + 1;
            assert_eq!(
                frame(line, 100),
                Framed::Answer { reply: BAD_FORMAT, consumed },
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
        // ... while a length that truncates to a small int32_t is that length (C's truncation).
        assert_eq!(frame(b"set k 0 0 4294967297\r\na\r\n", 100), Framed::Message { kind: kind::STORE, len: 25 });
        assert_eq!(frame(b"incr k -1\r\n", 100), Framed::Answer { reply: DELTA, consumed: 11 });
        assert_eq!(frame(b"quit\r\n", 100), Framed::Quit { consumed: 6 });
        assert!(matches!(frame(&[0x80, 0, 0, 5], 100), Framed::Fatal { .. }), "the binary protocol");
        assert_eq!(
            frame(b"mg k v x\r\n", 100),
            Framed::Answer { reply: b"CLIENT_ERROR invalid flag\r\n", consumed: 10 }
        );
        // An ms refused for its flags swallows its data block, as memcached does.
        assert_eq!(
            frame(b"ms k 2 x\r\nab\r\nmn\r\n", 100),
            Framed::Answer { reply: b"CLIENT_ERROR invalid flag\r\n", consumed: 14 }
        );
        assert_eq!(frame(b"ms k 2 T5\r\nab\r\n", 100), Framed::Message { kind: kind::STORE, len: 15 });
        assert_eq!(frame(b"ms k 2\r\na", 100), Framed::Incomplete);
        assert_eq!(frame(b"ms quiet\r\n", 100), Framed::Answer { reply: BAD_FORMAT, consumed: 10 });
        assert_eq!(frame(b"mn\r\n", 100), Framed::Message { kind: kind::OTHER, len: 4 });
        let many = format!("get {}\r\n", (0..20).map(|i| format!("k{i}")).collect::<Vec<_>>().join(" "));
        assert!(matches!(frame(many.as_bytes(), 100), Framed::Message { kind: kind::LONG_GET, .. }));
        let long_key = format!("get {}\r\n", "k".repeat(251));
        assert_eq!(frame(long_key.as_bytes(), 100), Framed::Answer { reply: BAD_FORMAT, consumed: long_key.len() });
    }

    #[test]
    fn commands_parse_with_their_arguments() {
        let m = b"cas k 5 -1 3 77 noreply\r\nabc\r\n";
        assert_eq!(
            parse(m, kind::STORE),
            Some(Command::Store {
                op: StoreOp::Cas,
                key: b"k",
                flags: 5,
                exptime: -1,
                data: b"abc",
                cas: 77,
                noreply: true
            })
        );
        assert_eq!(
            parse(b"gats 10 a b\r\n", kind::GET),
            Some(Command::Get { keys: vec![b"a", b"b"], cas: true, touch: Some(10) })
        );
        assert_eq!(
            parse(b"decr n 4\r\n", kind::ARITH),
            Some(Command::Arith { incr: false, key: b"n", delta: 4, noreply: false })
        );
    }
}
