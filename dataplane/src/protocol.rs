//! The wire format between `synergy load` and a synergy server: a 128-byte request header and
//! a 64-byte reply header, little-endian, fixed offsets, each followed by its body in protocol
//! version 2. Decoding never panics: anything that is not exactly a well-formed message is an
//! error the transport counts and drops (or answers with `status::MALFORMED` when it can read
//! the id).
//!
//! Request (128 bytes, then `body length` bytes of body):
//! ```text
//!  0  u32 magic "SYNQ"      4  u16 version (1|2)   6  u16 flags
//!  8  u64 id               16  u32 kind           20  u32 flow
//! 24  u64 service_ns       32  u64 client_ts
//! 40  u8  key length       41..41+len key bytes   zero padding
//! 124 u32 body length (version 2, FLAG_BODY)
//! ```
//! Flags: bit 0 (`FLAG_KEY`) says bytes 40.. carry a key (1..=64 bytes, for key-value
//! applications); without it bytes 40..124 are zero. Bit 1 (`FLAG_BODY`, version 2 only) says
//! bytes 124..128 hold the body's length and the body follows the header; without it they are
//! zero and the message is exactly 128 bytes. Other bits are reserved (zero).
//! Reply (64 bytes, then `body length` bytes of body):
//! ```text
//!  0  u32 magic "SYNP"      4  u16 version (1|2)   6  u16 flags
//!  8  u64 id               16  u32 kind           20  u32 status
//! 24  u64 value            32  u64 client_ts      40  u32 worker
//! 44  u32 preemptions      48  u64 server_ns (time in the server)
//! 56  u32 credits          60  u32 body length (version 2, FLAG_BODY)
//! ```
//! Reply flags: bit 0 (`FLAG_CREDITS`) says bytes 56..60 carry the credits of the request's
//! session (`--overload credits`: how many requests the session, its `flow`, may have outstanding
//! from now on; at least 1); without it they are zero. Bit 1 (`FLAG_BODY`, version 2 only) as in
//! requests, at bytes 60..64. Other bits are reserved (zero).
//! A request's `flow` is its session. Status 3 (`REJECTED`) answers a request the server's AQM
//! turned away unserved; status 4 (`TOO_LARGE`) one whose body exceeds the server's limit.
//!
//! **Versions.** A message without a body is encoded as version 1, byte for byte what it was
//! before bodies existed, so version-1 peers keep working with each other and with this code. A
//! message with a body is version 2, which a version-1 peer refuses with "unsupported version 2"
//! (its load generator counts the reply as bad; its server answers `MALFORMED`): a clear error,
//! never a body misread as padding.

use synergy::request::{Body, Key, Reply, Request};

/// Bytes of a request header (the whole request in version 1).
pub const REQUEST_LEN: usize = 128;
/// Bytes of a reply header (the whole reply in version 1).
pub const REPLY_LEN: usize = 64;
/// The first 4 bytes of every request.
pub const REQUEST_MAGIC: u32 = u32::from_le_bytes(*b"SYNQ");
/// The first 4 bytes of every reply.
pub const REPLY_MAGIC: u32 = u32::from_le_bytes(*b"SYNP");
/// The version of messages without a body.
pub const VERSION: u16 = 1;
/// The version of messages with a body (`FLAG_BODY`).
pub const VERSION_BODY: u16 = 2;
/// The largest body kernel UDP can carry in one request datagram: 65,507 bytes of IPv4 UDP
/// payload less the header.
pub const UDP_MAX_REQUEST_BODY: usize = 65_507 - REQUEST_LEN;
/// The largest reply body in one datagram.
pub const UDP_MAX_REPLY_BODY: usize = 65_507 - REPLY_LEN;
/// Byte offset of a request's `kind` (what ingress steering by kind reads).
pub const REQUEST_KIND_OFFSET: usize = 16;

/// Request flag: a key follows at byte 40.
pub const FLAG_KEY: u16 = 1;
/// Reply flag: bytes 56..60 carry the session's credits.
pub const FLAG_CREDITS: u16 = 1;
/// Request and reply flag (version 2): a body follows the header; its length is at
/// `REQUEST_BODY_LEN_AT` / `REPLY_BODY_LEN_AT`.
pub const FLAG_BODY: u16 = 2;
const CREDITS_AT: usize = 56;
const REQUEST_BODY_LEN_AT: usize = 124;
const REPLY_BODY_LEN_AT: usize = 60;
const KEY_LEN_AT: usize = 40;
const KEY_AT: usize = 41;
const _: () = assert!(KEY_AT + Key::MAX <= REQUEST_BODY_LEN_AT);

/// Why a datagram was not a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// Not the message's exact length (`got` bytes).
    BadLength {
        /// The datagram's length.
        got: usize,
    },
    /// Not a message of this protocol (its first 4 bytes).
    BadMagic(u32),
    /// A version this side does not speak.
    BadVersion(u16),
    /// Flags or padding bits set that this version does not define.
    Reserved,
    /// `FLAG_KEY` with a key length of 0 or above `Key::MAX`.
    BadKeyLength(u8),
    /// A body longer than the receiver accepts (`max` bytes).
    BodyTooLarge {
        /// The body's length.
        len: usize,
        /// The longest body accepted.
        max: usize,
    },
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::BadLength { got } => write!(f, "datagram of {got} bytes"),
            WireError::BadMagic(m) => write!(f, "bad magic {m:#010x}"),
            WireError::BadVersion(v) => write!(f, "unsupported version {v}"),
            WireError::Reserved => f.write_str("reserved bits set"),
            WireError::BadKeyLength(n) => write!(f, "key length {n} (must be 1..={})", Key::MAX),
            WireError::BodyTooLarge { len, max } => write!(f, "a body of {len} bytes (at most {max} accepted)"),
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

/// Checks a header's magic and version; returns its flags and the body length it announces.
/// `b` holds at least `header_len` bytes; `body_len_at` is where version 2 keeps the length.
fn announced(b: &[u8], header_len: usize, magic: u32, body_len_at: usize) -> Result<(u16, usize), WireError> {
    if b.len() < header_len {
        return Err(WireError::BadLength { got: b.len() });
    }
    let m = u32_at(b, 0);
    if m != magic {
        return Err(WireError::BadMagic(m));
    }
    let flags = u16_at(b, 6);
    let body_len = match u16_at(b, 4) {
        VERSION if flags & FLAG_BODY == 0 => 0,
        VERSION => return Err(WireError::Reserved),
        VERSION_BODY if flags & FLAG_BODY != 0 => u32_at(b, body_len_at) as usize,
        VERSION_BODY => 0,
        v => return Err(WireError::BadVersion(v)),
    };
    Ok((flags, body_len))
}

/// Checks magic, version and length (the whole message is exactly header and body); returns
/// the flags and the body's length.
fn header(b: &[u8], header_len: usize, magic: u32, body_len_at: usize) -> Result<(u16, usize), WireError> {
    let (flags, body_len) = announced(b, header_len, magic, body_len_at)?;
    if b.len() != header_len + body_len {
        return Err(WireError::BadLength { got: b.len() });
    }
    Ok((flags, body_len))
}

/// Writes magic, version and, with a body, `FLAG_BODY` and its length.
fn put_header(b: &mut [u8], magic: u32, body_len: usize, body_len_at: usize) {
    put(b, 0, &magic.to_le_bytes());
    if body_len == 0 {
        put(b, 4, &VERSION.to_le_bytes());
    } else {
        put(b, 4, &VERSION_BODY.to_le_bytes());
        put(b, 6, &FLAG_BODY.to_le_bytes());
        put(b, body_len_at, &(body_len as u32).to_le_bytes());
    }
}

/// `r`'s header, with `client_ts` as its send time; its body (if any) follows it on the wire.
///
/// # Panics
/// If the body is longer than `u32::MAX` bytes (no transport carries that).
pub fn encode_request_header(r: &Request, client_ts: u64) -> [u8; REQUEST_LEN] {
    encode_request_header_for_body(r, client_ts, r.body.len())
}

/// As [`encode_request_header`], for a body of `body_len` bytes sent from elsewhere than
/// `r.body` (a load generator sends one shared body with every request).
///
/// # Panics
/// If `body_len` is above `u32::MAX`.
pub fn encode_request_header_for_body(r: &Request, client_ts: u64, body_len: usize) -> [u8; REQUEST_LEN] {
    let mut b = [0u8; REQUEST_LEN];
    assert!(body_len <= u32::MAX as usize, "a request body of {body_len} bytes");
    put_header(&mut b, REQUEST_MAGIC, body_len, REQUEST_BODY_LEN_AT);
    put(&mut b, 8, &r.id.to_le_bytes());
    put(&mut b, REQUEST_KIND_OFFSET, &r.kind.to_le_bytes());
    put(&mut b, 20, &r.flow.to_le_bytes());
    put(&mut b, 24, &r.service_ns.to_le_bytes());
    put(&mut b, 32, &client_ts.to_le_bytes());
    if !r.key.is_empty() {
        let flags = u16_at(&b, 6) | FLAG_KEY;
        put(&mut b, 6, &flags.to_le_bytes());
        b[KEY_LEN_AT] = r.key.as_bytes().len() as u8;
        put(&mut b, KEY_AT, r.key.as_bytes());
    }
    b
}

/// The whole request message: header, then body.
pub fn encode_request(r: &Request) -> Vec<u8> {
    let mut v = Vec::with_capacity(REQUEST_LEN + r.body.len());
    v.extend_from_slice(&encode_request_header(r, r.client_ts));
    v.extend_from_slice(&r.body);
    v
}

/// The body length a request header announces (what a stream reads next), checking the magic
/// and version first. `header` is at least the header's 128 bytes.
pub fn request_body_len(header: &[u8]) -> Result<usize, WireError> {
    announced(header, REQUEST_LEN, REQUEST_MAGIC, REQUEST_BODY_LEN_AT).map(|(_, len)| len)
}

/// The request in `b`, its body copied into a pooled [`synergy::Body`]; `arrival_ns` and
/// `origin` are the transport's to fill in. A body longer than `max_body` is refused
/// (`WireError::BodyTooLarge`) before anything is copied.
pub fn decode_request(b: &[u8], max_body: usize) -> Result<Request, WireError> {
    let (flags, body_len) = header(b, REQUEST_LEN, REQUEST_MAGIC, REQUEST_BODY_LEN_AT)?;
    if flags & !(FLAG_KEY | FLAG_BODY) != 0 {
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
    let padding_to = if flags & FLAG_BODY != 0 { REQUEST_BODY_LEN_AT } else { REQUEST_LEN };
    if b[padding_from..padding_to].iter().any(|&x| x != 0) {
        return Err(WireError::Reserved);
    }
    if body_len > max_body {
        return Err(WireError::BodyTooLarge { len: body_len, max: max_body });
    }
    Ok(Request {
        key,
        id: u64_at(b, 8),
        kind: u32_at(b, REQUEST_KIND_OFFSET),
        flow: u32_at(b, 20),
        service_ns: u64_at(b, 24),
        client_ts: u64_at(b, 32),
        body: Body::from_slice(&b[REQUEST_LEN..]),
        ..Request::default()
    })
}

/// `r`'s header; its body follows it on the wire.
///
/// # Panics
/// If the body is longer than `u32::MAX` bytes.
pub fn encode_reply_header(r: &Reply) -> [u8; REPLY_LEN] {
    let mut b = [0u8; REPLY_LEN];
    assert!(r.body.len() <= u32::MAX as usize, "a reply body of {} bytes", r.body.len());
    put_header(&mut b, REPLY_MAGIC, r.body.len(), REPLY_BODY_LEN_AT);
    put(&mut b, 8, &r.id.to_le_bytes());
    put(&mut b, 16, &r.kind.to_le_bytes());
    put(&mut b, 20, &r.status.to_le_bytes());
    put(&mut b, 24, &r.value.to_le_bytes());
    put(&mut b, 32, &r.client_ts.to_le_bytes());
    put(&mut b, 40, &r.worker.to_le_bytes());
    put(&mut b, 44, &r.preemptions.to_le_bytes());
    put(&mut b, 48, &r.latency_ns().to_le_bytes());
    if let Some(c) = r.credits {
        let flags = u16_at(&b, 6) | FLAG_CREDITS;
        put(&mut b, 6, &flags.to_le_bytes());
        put(&mut b, CREDITS_AT, &c.to_le_bytes());
    }
    b
}

/// The whole reply message: header, then body.
pub fn encode_reply(r: &Reply) -> Vec<u8> {
    let mut v = Vec::with_capacity(REPLY_LEN + r.body.len());
    v.extend_from_slice(&encode_reply_header(r));
    v.extend_from_slice(&r.body);
    v
}

/// A reply as the client sees it (its body: [`reply_body`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireReply {
    /// The request's id.
    pub id: u64,
    /// The request's kind.
    pub kind: u32,
    /// `synergy::request::status` (0: ok).
    pub status: u32,
    /// The application's result word.
    pub value: u64,
    /// The client's timestamp, echoed.
    pub client_ts: u64,
    /// The worker that served it.
    pub worker: u32,
    /// How often it was preempted.
    pub preemptions: u32,
    /// The server's own latency: receive timestamp to reply (ns).
    pub server_ns: u64,
    /// The session's credits, if the server runs overload control.
    pub credits: Option<u32>,
    /// The body's length in bytes.
    pub body_len: u32,
}

/// The id and kind of a datagram that is not a well-formed request but starts like one (magic and
/// a known version, at least 24 bytes): the transport answers it with `status::MALFORMED` (or
/// `TOO_LARGE`) instead of leaving the client to time out. Anything else has no one to answer and
/// is only counted.
pub fn salvage_request_id(b: &[u8]) -> Option<(u64, u32)> {
    if b.len() < 24 || u32_at(b, 0) != REQUEST_MAGIC || !matches!(u16_at(b, 4), VERSION | VERSION_BODY) {
        return None;
    }
    Some((u64_at(b, 8), u32_at(b, 16)))
}

/// Decodes a reply datagram (either version).
pub fn decode_reply(b: &[u8]) -> Result<WireReply, WireError> {
    let (flags, body_len) = header(b, REPLY_LEN, REPLY_MAGIC, REPLY_BODY_LEN_AT)?;
    let padding_from = if flags & FLAG_CREDITS != 0 { CREDITS_AT + 4 } else { CREDITS_AT };
    let padding_to = if flags & FLAG_BODY != 0 { REPLY_BODY_LEN_AT } else { REPLY_LEN };
    if flags & !(FLAG_CREDITS | FLAG_BODY) != 0 || b[padding_from.min(padding_to)..padding_to].iter().any(|&x| x != 0) {
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
        body_len: body_len as u32,
    })
}

/// The body of a reply message `decode_reply` accepted.
pub fn reply_body(b: &[u8]) -> &[u8] {
    b.get(REPLY_LEN..).unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: usize = UDP_MAX_REQUEST_BODY;

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
        assert_eq!(decode_request(&b, M), Ok(req()));
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
            body: Default::default(),
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
                body_len: 0,
            }
        );
        assert!(b[56..].iter().all(|&x| x == 0) && u16_at(&b, 6) == 0, "no credits: flags and bytes 56.. zero");
        let credited = encode_reply(&Reply { credits: Some(0x0102_0304), ..r.clone() });
        assert_eq!(u16_at(&credited, 6), FLAG_CREDITS);
        assert_eq!(u32_at(&credited, 56), 0x0102_0304);
        assert_eq!(decode_reply(&credited).unwrap().credits, Some(0x0102_0304));
        // Credits without the flag, a byte after them, or an undefined flag: reserved bits.
        let mut bad = credited.clone();
        bad[6] = 0;
        assert_eq!(decode_reply(&bad), Err(WireError::Reserved));
        let mut bad = credited.clone();
        bad[60] = 1;
        assert_eq!(decode_reply(&bad), Err(WireError::Reserved));
        let mut bad = credited.clone();
        bad[6] = 3;
        assert_eq!(decode_reply(&bad), Err(WireError::Reserved));
    }

    #[test]
    fn malformed_datagrams_are_errors_not_panics() {
        let good = encode_request(&req());
        assert_eq!(decode_request(&[], M), Err(WireError::BadLength { got: 0 }));
        assert_eq!(decode_request(&good[..127], M), Err(WireError::BadLength { got: 127 }));
        let mut long = good.to_vec();
        long.push(0);
        assert_eq!(decode_request(&long, M), Err(WireError::BadLength { got: 129 }));
        let mut bad = good.clone();
        bad[0] = b'X';
        assert!(matches!(decode_request(&bad, M), Err(WireError::BadMagic(_))));
        let mut bad = good.clone();
        bad[4] = 3;
        assert_eq!(decode_request(&bad, M), Err(WireError::BadVersion(3)));
        let mut bad = good.clone();
        bad[6] = 1;
        assert_eq!(decode_request(&bad, M), Err(WireError::BadKeyLength(0)), "FLAG_KEY without a key");
        let mut bad = good.clone();
        bad[100] = 1;
        assert_eq!(decode_request(&bad, M), Err(WireError::Reserved));
        let mut bad = good.clone();
        bad[6] = 2;
        assert_eq!(decode_request(&bad, M), Err(WireError::Reserved), "an undefined flag");
        // A key-less request is a malformed one once its padding is not zero; with FLAG_KEY the
        // key length must be 1..=64 and everything after the key zero.
        let keyed = encode_request(&Request { key: Key::new(b"key-000042").unwrap(), ..req() });
        assert_eq!(u16_at(&keyed, 6), FLAG_KEY);
        assert_eq!(keyed[40], 10);
        assert_eq!(&keyed[41..51], b"key-000042");
        assert_eq!(decode_request(&keyed, M).unwrap().key.as_bytes(), b"key-000042");
        for n in [0u8, 65, 255] {
            let mut bad = keyed.clone();
            bad[40] = n;
            assert_eq!(decode_request(&bad, M), Err(WireError::BadKeyLength(n)));
        }
        let mut bad = keyed.clone();
        bad[51] = b'x';
        assert_eq!(decode_request(&bad, M), Err(WireError::Reserved), "a byte after the key");
        let mut longest = keyed.clone();
        longest[40] = 64;
        longest[41..105].fill(b'k');
        assert_eq!(decode_request(&longest, M).unwrap().key.as_bytes(), &[b'k'; 64][..]);
        // The id of something that starts like a request is salvaged; of anything else not.
        assert_eq!(salvage_request_id(&good[..24]), Some((0x0102_0304_0506_0708, 7)));
        assert_eq!(salvage_request_id(&good[..23]), None);
        assert_eq!(salvage_request_id(&encode_reply(&Reply::default())), None);
        // A reply is not a request and vice versa.
        assert!(matches!(decode_request(&[0u8; 128], M), Err(WireError::BadMagic(0))));
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
            let _ = decode_request(&buf, M);
            let _ = decode_request(&buf, 0);
            let _ = decode_reply(&buf);
        }
    }

    #[test]
    fn bodies_travel_in_version_2_and_bodiless_messages_stay_version_1() {
        // Without a body: version 1, byte for byte what version-1 peers send and accept.
        let plain = encode_request(&req());
        assert_eq!((plain.len(), u16_at(&plain, 4), u16_at(&plain, 6)), (REQUEST_LEN, VERSION, 0));
        // With a body (and a key): version 2, FLAG_BODY, the length at 124, the body after.
        let body: Vec<u8> = (0..1_000u32).map(|i| (i * 7) as u8).collect();
        let r = Request { key: Key::new(b"k1").unwrap(), body: Body::from_slice(&body), ..req() };
        let b = encode_request(&r);
        assert_eq!(b.len(), REQUEST_LEN + 1_000);
        assert_eq!((u16_at(&b, 4), u16_at(&b, 6)), (VERSION_BODY, FLAG_KEY | FLAG_BODY));
        assert_eq!(u32_at(&b, 124), 1_000);
        let back = decode_request(&b, M).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.body(), &body[..]);
        // The limit: refused with both lengths, whatever else is right.
        assert_eq!(decode_request(&b, 999), Err(WireError::BodyTooLarge { len: 1_000, max: 999 }));
        assert_eq!(decode_request(&b, 1_000).unwrap().body().len(), 1_000);
        // A length that disagrees with the datagram, either way.
        assert_eq!(decode_request(&b[..b.len() - 1], M), Err(WireError::BadLength { got: REQUEST_LEN + 999 }));
        let mut long = b.clone();
        long.push(0);
        assert_eq!(decode_request(&long, M), Err(WireError::BadLength { got: REQUEST_LEN + 1_001 }));
        // FLAG_BODY in version 1 is a reserved bit; version 2 without it is a plain 128 bytes.
        let mut v1_with_flag = plain.clone();
        v1_with_flag[6] = FLAG_BODY as u8;
        assert_eq!(decode_request(&v1_with_flag, M), Err(WireError::Reserved));
        let mut v2_plain = plain.clone();
        v2_plain[4] = VERSION_BODY as u8;
        assert_eq!(decode_request(&v2_plain, M), Ok(req()));
        // A version-1 decoder (as an old load generator's) refuses a version-2 message by its version.
        assert_eq!(salvage_request_id(&b), Some((req().id, req().kind)));
        // Replies likewise, with credits and body side by side.
        let reply = Reply { id: 3, credits: Some(9), ..Reply::default() }.with_body(b"value bytes");
        let rb = encode_reply(&reply);
        assert_eq!(
            (rb.len(), u16_at(&rb, 4), u16_at(&rb, 6)),
            (REPLY_LEN + 11, VERSION_BODY, FLAG_CREDITS | FLAG_BODY)
        );
        let w = decode_reply(&rb).unwrap();
        assert_eq!((w.id, w.credits, w.body_len), (3, Some(9), 11));
        assert_eq!(reply_body(&rb), b"value bytes");
        assert_eq!(decode_reply(&rb[..REPLY_LEN + 10]), Err(WireError::BadLength { got: REPLY_LEN + 10 }));
        let bare = encode_reply(&Reply { id: 3, ..Reply::default() });
        assert_eq!((bare.len(), u16_at(&bare, 4)), (REPLY_LEN, VERSION));
        assert_eq!(decode_reply(&bare).unwrap().body_len, 0);
    }
}
