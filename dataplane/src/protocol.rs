//! The wire format between `synergy loadgen` and a synergy server: 128-byte requests and 64-byte
//! replies, little-endian, fixed offsets. Decoding never panics: anything that is not exactly a
//! well-formed message is an error the transport counts and drops.
//!
//! Request (128 bytes):
//! ```text
//!  0  u32 magic "SYNQ"      4  u16 version (1)     6  u16 flags
//!  8  u64 id               16  u32 kind           20  u32 flow
//! 24  u64 service_ns       32  u64 client_ts
//! 40  u8  key length       41..41+len key bytes   rest zero padding
//! ```
//! Flags: bit 0 (`FLAG_KEY`) says bytes 40.. carry a key (1..=64 bytes, for key-value
//! applications); without it bytes 40..128 are zero. Other bits are reserved (zero).
//! Reply (64 bytes):
//! ```text
//!  0  u32 magic "SYNP"      4  u16 version (1)     6  u16 flags
//!  8  u64 id               16  u32 kind           20  u32 status
//! 24  u64 value            32  u64 client_ts      40  u32 worker
//! 44  u32 preemptions      48  u64 server_ns (time in the server)
//! 56  u32 credits          60..64 zero
//! ```
//! Reply flags: bit 0 (`FLAG_CREDITS`) says bytes 56..60 carry the credits of the request's
//! session (`--overload credits`: how many requests the session, its `flow`, may have outstanding
//! from now on; at least 1); without it they are zero. Other bits are reserved (zero).
//! A request's `flow` is its session. Status 3 (`REJECTED`) answers a request the server's AQM
//! turned away unserved.

use synergy::request::{Key, Reply, Request};

pub const REQUEST_LEN: usize = 128;
pub const REPLY_LEN: usize = 64;
pub const REQUEST_MAGIC: u32 = u32::from_le_bytes(*b"SYNQ");
pub const REPLY_MAGIC: u32 = u32::from_le_bytes(*b"SYNP");
pub const VERSION: u16 = 1;
/// Byte offset of a request's `kind` (what ingress steering by kind reads).
pub const REQUEST_KIND_OFFSET: usize = 16;

/// Request flag: a key follows at byte 40.
pub const FLAG_KEY: u16 = 1;
/// Reply flag: bytes 56..60 carry the session's credits.
pub const FLAG_CREDITS: u16 = 1;
const CREDITS_AT: usize = 56;
const KEY_LEN_AT: usize = 40;
const KEY_AT: usize = 41;
const _: () = assert!(KEY_AT + Key::MAX <= REQUEST_LEN);

/// Why a datagram was not a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// Not the message's exact length (`got` bytes).
    BadLength {
        got: usize,
    },
    BadMagic(u32),
    BadVersion(u16),
    /// Flags or padding bits set that this version does not define.
    Reserved,
    /// `FLAG_KEY` with a key length of 0 or above `Key::MAX`.
    BadKeyLength(u8),
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::BadLength { got } => write!(f, "datagram of {got} bytes"),
            WireError::BadMagic(m) => write!(f, "bad magic {m:#010x}"),
            WireError::BadVersion(v) => write!(f, "unsupported version {v}"),
            WireError::Reserved => f.write_str("reserved bits set"),
            WireError::BadKeyLength(n) => write!(f, "key length {n} (must be 1..={})", Key::MAX),
        }
    }
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"))
}
fn put(b: &mut [u8], o: usize, v: &[u8]) {
    b[o..o + v.len()].copy_from_slice(v);
}

/// Checks length, magic and version; returns the flags.
fn header(b: &[u8], len: usize, magic: u32) -> Result<u16, WireError> {
    if b.len() != len {
        return Err(WireError::BadLength { got: b.len() });
    }
    let m = u32_at(b, 0);
    if m != magic {
        return Err(WireError::BadMagic(m));
    }
    let v = u16_at(b, 4);
    if v != VERSION {
        return Err(WireError::BadVersion(v));
    }
    Ok(u16_at(b, 6))
}

/// Writes magic and version (flags stay 0): what `header` checks.
fn put_header(b: &mut [u8], magic: u32) {
    put(b, 0, &magic.to_le_bytes());
    put(b, 4, &VERSION.to_le_bytes());
}

pub fn encode_request(r: &Request) -> [u8; REQUEST_LEN] {
    let mut b = [0u8; REQUEST_LEN];
    put_header(&mut b, REQUEST_MAGIC);
    put(&mut b, 8, &r.id.to_le_bytes());
    put(&mut b, REQUEST_KIND_OFFSET, &r.kind.to_le_bytes());
    put(&mut b, 20, &r.flow.to_le_bytes());
    put(&mut b, 24, &r.service_ns.to_le_bytes());
    put(&mut b, 32, &r.client_ts.to_le_bytes());
    if !r.key.is_empty() {
        put(&mut b, 6, &FLAG_KEY.to_le_bytes());
        b[KEY_LEN_AT] = r.key.as_bytes().len() as u8;
        put(&mut b, KEY_AT, r.key.as_bytes());
    }
    b
}

/// The request in `b`; `arrival_ns` and `origin` are the transport's to fill in.
pub fn decode_request(b: &[u8]) -> Result<Request, WireError> {
    let flags = header(b, REQUEST_LEN, REQUEST_MAGIC)?;
    if flags & !FLAG_KEY != 0 {
        return Err(WireError::Reserved);
    }
    let (key, padding_from) = if flags & FLAG_KEY != 0 {
        let n = b[KEY_LEN_AT];
        let len = n as usize;
        if len == 0 || len > Key::MAX {
            return Err(WireError::BadKeyLength(n));
        }
        (Key::new(&b[KEY_AT..KEY_AT + len]).expect("at most Key::MAX bytes"), KEY_AT + len)
    } else {
        (Key::default(), KEY_LEN_AT)
    };
    if b[padding_from..].iter().any(|&x| x != 0) {
        return Err(WireError::Reserved);
    }
    Ok(Request {
        key,
        id: u64_at(b, 8),
        kind: u32_at(b, REQUEST_KIND_OFFSET),
        flow: u32_at(b, 20),
        service_ns: u64_at(b, 24),
        client_ts: u64_at(b, 32),
        ..Request::default()
    })
}

pub fn encode_reply(r: &Reply) -> [u8; REPLY_LEN] {
    let mut b = [0u8; REPLY_LEN];
    put_header(&mut b, REPLY_MAGIC);
    put(&mut b, 8, &r.id.to_le_bytes());
    put(&mut b, 16, &r.kind.to_le_bytes());
    put(&mut b, 20, &r.status.to_le_bytes());
    put(&mut b, 24, &r.value.to_le_bytes());
    put(&mut b, 32, &r.client_ts.to_le_bytes());
    put(&mut b, 40, &r.worker.to_le_bytes());
    put(&mut b, 44, &r.preemptions.to_le_bytes());
    put(&mut b, 48, &r.latency_ns().to_le_bytes());
    if let Some(c) = r.credits {
        put(&mut b, 6, &FLAG_CREDITS.to_le_bytes());
        put(&mut b, CREDITS_AT, &c.to_le_bytes());
    }
    b
}

/// A reply as the client sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireReply {
    pub id: u64,
    pub kind: u32,
    pub status: u32,
    pub value: u64,
    pub client_ts: u64,
    pub worker: u32,
    pub preemptions: u32,
    pub server_ns: u64,
    /// The session's credits, if the server runs overload control.
    pub credits: Option<u32>,
}

/// The id and kind of a datagram that is not a well-formed request but starts like one (magic and
/// version right, at least 24 bytes): the transport answers it with `status::MALFORMED` instead
/// of leaving the client to time out. Anything else has no one to answer and is only counted.
pub fn salvage_request_id(b: &[u8]) -> Option<(u64, u32)> {
    if b.len() < 24 || u32_at(b, 0) != REQUEST_MAGIC || u16_at(b, 4) != VERSION {
        return None;
    }
    Some((u64_at(b, 8), u32_at(b, 16)))
}

pub fn decode_reply(b: &[u8]) -> Result<WireReply, WireError> {
    let flags = header(b, REPLY_LEN, REPLY_MAGIC)?;
    let padding_from = if flags & FLAG_CREDITS != 0 { CREDITS_AT + 4 } else { CREDITS_AT };
    if flags & !FLAG_CREDITS != 0 || b[padding_from..].iter().any(|&x| x != 0) {
        return Err(WireError::Reserved);
    }
    Ok(WireReply {
        id: u64_at(b, 8),
        kind: u32_at(b, 16),
        status: u32_at(b, 20),
        value: u64_at(b, 24),
        client_ts: u64_at(b, 32),
        worker: u32_at(b, 40),
        preemptions: u32_at(b, 44),
        server_ns: u64_at(b, 48),
        credits: (flags & FLAG_CREDITS != 0).then(|| u32_at(b, CREDITS_AT)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> Request {
        Request {
            id: 0x0102_0304_0506_0708,
            kind: 7,
            flow: 513,
            service_ns: 100_000,
            client_ts: u64::MAX - 3,
            ..Request::default()
        }
    }

    #[test]
    fn request_round_trip_and_layout() {
        let b = encode_request(&req());
        assert_eq!(&b[0..4], b"SYNQ");
        assert_eq!(&b[8..16], &0x0102_0304_0506_0708u64.to_le_bytes());
        assert_eq!(u32_at(&b, 20), 513);
        assert_eq!(decode_request(&b), Ok(req()));
    }

    #[test]
    fn reply_round_trip_and_layout() {
        let r = Reply {
            id: 9,
            kind: 2,
            status: 3,
            value: 0xdead_beef,
            client_ts: 77,
            arrival_ns: 1_000,
            done_ns: 1_750,
            worker: 1,
            preemptions: 4,
            origin: 55,
            credits: None,
        };
        let b = encode_reply(&r);
        assert_eq!(&b[0..4], b"SYNP");
        let w = decode_reply(&b).unwrap();
        assert_eq!(
            w,
            WireReply {
                id: 9,
                kind: 2,
                status: 3,
                value: 0xdead_beef,
                client_ts: 77,
                worker: 1,
                preemptions: 4,
                server_ns: 750,
                credits: None,
            }
        );
        assert!(b[56..].iter().all(|&x| x == 0) && u16_at(&b, 6) == 0, "no credits: flags and bytes 56.. zero");
        let credited = encode_reply(&Reply { credits: Some(0x0102_0304), ..r });
        assert_eq!(u16_at(&credited, 6), FLAG_CREDITS);
        assert_eq!(u32_at(&credited, 56), 0x0102_0304);
        assert_eq!(decode_reply(&credited).unwrap().credits, Some(0x0102_0304));
        // Credits without the flag, a byte after them, or an undefined flag: reserved bits.
        let mut bad = credited;
        bad[6] = 0;
        assert_eq!(decode_reply(&bad), Err(WireError::Reserved));
        let mut bad = credited;
        bad[60] = 1;
        assert_eq!(decode_reply(&bad), Err(WireError::Reserved));
        let mut bad = credited;
        bad[6] = 3;
        assert_eq!(decode_reply(&bad), Err(WireError::Reserved));
    }

    #[test]
    fn malformed_datagrams_are_errors_not_panics() {
        let good = encode_request(&req());
        assert_eq!(decode_request(&[]), Err(WireError::BadLength { got: 0 }));
        assert_eq!(decode_request(&good[..127]), Err(WireError::BadLength { got: 127 }));
        let mut long = good.to_vec();
        long.push(0);
        assert_eq!(decode_request(&long), Err(WireError::BadLength { got: 129 }));
        let mut bad = good;
        bad[0] = b'X';
        assert!(matches!(decode_request(&bad), Err(WireError::BadMagic(_))));
        let mut bad = good;
        bad[4] = 2;
        assert_eq!(decode_request(&bad), Err(WireError::BadVersion(2)));
        let mut bad = good;
        bad[6] = 1;
        assert_eq!(decode_request(&bad), Err(WireError::BadKeyLength(0)), "FLAG_KEY without a key");
        let mut bad = good;
        bad[100] = 1;
        assert_eq!(decode_request(&bad), Err(WireError::Reserved));
        let mut bad = good;
        bad[6] = 2;
        assert_eq!(decode_request(&bad), Err(WireError::Reserved), "an undefined flag");
        // A key-less request is a malformed one once its padding is not zero; with FLAG_KEY the
        // key length must be 1..=64 and everything after the key zero.
        let keyed = encode_request(&Request { key: Key::new(b"key-000042").unwrap(), ..req() });
        assert_eq!(u16_at(&keyed, 6), FLAG_KEY);
        assert_eq!(keyed[40], 10);
        assert_eq!(&keyed[41..51], b"key-000042");
        assert_eq!(decode_request(&keyed).unwrap().key.as_bytes(), b"key-000042");
        for n in [0u8, 65, 255] {
            let mut bad = keyed;
            bad[40] = n;
            assert_eq!(decode_request(&bad), Err(WireError::BadKeyLength(n)));
        }
        let mut bad = keyed;
        bad[51] = b'x';
        assert_eq!(decode_request(&bad), Err(WireError::Reserved), "a byte after the key");
        let mut longest = keyed;
        longest[40] = 64;
        longest[41..105].fill(b'k');
        assert_eq!(decode_request(&longest).unwrap().key.as_bytes(), &[b'k'; 64][..]);
        // The id of something that starts like a request is salvaged; of anything else not.
        assert_eq!(salvage_request_id(&good[..24]), Some((0x0102_0304_0506_0708, 7)));
        assert_eq!(salvage_request_id(&good[..23]), None);
        assert_eq!(salvage_request_id(&encode_reply(&Reply::default())), None);
        // A reply is not a request and vice versa.
        assert!(matches!(decode_request(&[0u8; 128]), Err(WireError::BadMagic(0))));
        assert!(matches!(decode_reply(&good[..64]), Err(WireError::BadMagic(_))));
        // Every length and random content: never a panic.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..300 {
            let buf: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = decode_request(&buf);
            let _ = decode_reply(&buf);
        }
    }
}
