//! memcached's meta protocol (`mn`, `me`, `mg`, `ms`, `md`, `ma`) over the same store, as
//! memcached 1.6.18 answers it: status codes `HD`, `VA`, `EN`, `NF`, `NS`, `EX`, `MN`, `ME`; the
//! return flags echoed in the order they were asked for; base64 keys (`b`); autovivify (`N`),
//! recache wins (`R`, `W`, `Z`), stale items (`md I`, `ms I`, `X`); `q` dropping nominal
//! replies. [`check`] answers what memcached refuses before it looks at the store (so the
//! framer can answer it and, for `ms`, swallow the data block); the command functions assume a
//! line it accepted.

use crate::store::{arith_value, ItemMeta, Store, Stored};
use crate::text::StoreOp;
use std::borrow::Cow;
use std::io::Write as _;
use std::sync::atomic::Ordering::Relaxed;

/// memcached's `MFLAG_MAX_OPT_LENGTH`: a meta line has fewer tokens than this (with its empty
/// final one, as memcached counts).
const MAX_TOKENS: usize = 20;
/// The longest opaque (`O`) token, its letter included.
const MAX_OPAQUE: usize = 32;

/// A meta line's flags, as memcached's `_meta_flag_preparse` reads them.
#[derive(Debug, Default)]
pub struct Flags<'a> {
    /// The key, base64-decoded under `b`.
    pub key: Cow<'a, [u8]>,
    /// `b`: the key came base64-encoded.
    pub key_binary: bool,
    /// Every flag token in order (what the reply echoes, in that order).
    pub tokens: Vec<&'a [u8]>,
    /// `v`: answer the value.
    pub value: bool,
    /// `q`: drop the nominal reply.
    pub no_reply: bool,
    /// `u`: do not mark the item read.
    pub no_update: bool,
    /// `N`: vivify on a miss with this exptime.
    pub vivify: Option<i64>,
    /// `T`: a new exptime.
    pub ttl: Option<i64>,
    /// `R`: win a recache when the remaining TTL is under this exptime.
    pub recache: Option<i64>,
    /// `C`: the CAS unique to compare with.
    pub cas: Option<u64>,
    /// `M`: the mode letter.
    pub mode: Option<u8>,
    /// `F`: the client flags to store.
    pub client_flags: u32,
    /// `D`: `ma`'s delta.
    pub delta: Option<u64>,
    /// `J`: `ma`'s seed for an autovivified item.
    pub initial: u64,
    /// `I`: invalidate (md) or store as stale (ms).
    pub set_stale: bool,
}

fn num<T: std::str::FromStr>(t: &[u8]) -> Option<T> {
    std::str::from_utf8(t).ok()?.parse().ok()
}

/// memcached's `safe_strtol` into an `int32_t` (see `text`), widened.
fn exptime(t: &[u8]) -> Option<i64> {
    num::<i64>(t).map(|l| i64::from(l as i32))
}

/// Reads `flag_tokens` for `key`. Errors are memcached's messages (with their "\r\n"): a repeated
/// or unknown flag stops at once; a bad argument is remembered and reading goes on, so the last
/// such message wins, as in memcached.
pub fn preparse<'a>(key: &'a [u8], flag_tokens: &[&'a [u8]]) -> Result<Flags<'a>, &'static [u8]> {
    let mut f = Flags { key: Cow::Borrowed(key), tokens: flag_tokens.to_vec(), ..Flags::default() };
    let mut seen = [false; 128];
    let mut error: Option<&'static [u8]> = None;
    let bad_token = b"CLIENT_ERROR bad token in command line format\r\n";
    for t in flag_tokens {
        let (letter, arg) = (t[0], &t[1..]);
        if letter >= 127 || seen[letter as usize] {
            return Err(b"CLIENT_ERROR duplicate flag\r\n");
        }
        seen[letter as usize] = true;
        match letter {
            b'b' => match base64_decode(key) {
                Some(k) => {
                    f.key = Cow::Owned(k);
                    f.key_binary = true;
                }
                None => error = Some(b"CLIENT_ERROR error decoding key\r\n"),
            },
            b'N' => match exptime(arg) {
                Some(e) => f.vivify = Some(e),
                None => error = Some(bad_token),
            },
            b'T' => match exptime(arg) {
                Some(e) => f.ttl = Some(e),
                None => error = Some(bad_token),
            },
            b'R' => match exptime(arg) {
                Some(e) => f.recache = Some(e),
                None => error = Some(bad_token),
            },
            b'l' | b'O' | b'P' | b'L' | b'k' | b's' | b't' | b'c' | b'f' | b'h' => {}
            b'v' => f.value = true,
            b'u' => f.no_update = true,
            b'q' => f.no_reply = true,
            b'F' => match num::<u32>(arg) {
                Some(v) => f.client_flags = v,
                None => error = Some(error.unwrap_or(b"CLIENT_ERROR bad command line format\r\n")),
            },
            b'C' => match num::<u64>(arg) {
                Some(v) => f.cas = Some(v),
                None => error = Some(bad_token),
            },
            b'M' => match arg {
                [m] => f.mode = Some(*m),
                _ => error = Some(b"CLIENT_ERROR incorrect length for M token\r\n"),
            },
            b'J' => match num::<u64>(arg) {
                Some(v) => f.initial = v,
                None => error = Some(b"CLIENT_ERROR invalid numeric initial value\r\n"),
            },
            b'D' => match num::<u64>(arg) {
                Some(v) => f.delta = Some(v),
                None => error = Some(b"CLIENT_ERROR invalid numeric delta value\r\n"),
            },
            b'I' => f.set_stale = true,
            _ => return Err(b"CLIENT_ERROR invalid flag\r\n"),
        }
    }
    match error {
        Some(e) => Err(e),
        None => Ok(f),
    }
}

/// What memcached answers a meta line `t` (its tokens; `t[0]` is `mg`, `ms`, `md`, `ma` or
/// `me`) before it touches the store: `None` when it goes on to the command. For `ms`, whether
/// the data block that follows is swallowed with the error (it is once the length was read).
pub fn check(t: &[&[u8]]) -> Option<(&'static [u8], bool)> {
    let cmd = t[0];
    if cmd == b"me" {
        return (t.len() < 2 || t[1].len() > crate::text::KEY_MAX)
            .then_some((b"CLIENT_ERROR bad command line format\r\n", false));
    }
    if t.len() < 2 {
        return Some((&b"ERROR\r\n"[..], false));
    }
    if t[1].len() > crate::text::KEY_MAX {
        return Some((&b"CLIENT_ERROR bad command line format\r\n"[..], false));
    }
    let flags_from = if cmd == b"ms" {
        if t.len() == 2 {
            return Some((&b"CLIENT_ERROR bad command line format\r\n"[..], false));
        }
        3
    } else {
        2
    };
    // memcached counts a final empty token.
    if t.len() + 1 > MAX_TOKENS {
        return Some((
            if cmd == b"mg" {
                b"CLIENT_ERROR options flags are too long\r\n"
            } else {
                b"CLIENT_ERROR options flags too long\r\n"
            },
            false,
        ));
    }
    if cmd == b"ms" {
        match exptime(t[2]) {
            Some(len) if (0..=i64::from(i32::MAX - 2)).contains(&len) => {}
            _ => return Some((&b"CLIENT_ERROR bad command line format\r\n"[..], false)),
        }
    }
    let swallow = cmd == b"ms";
    let f = match preparse(t[1], &t[flags_from..]) {
        Ok(f) => f,
        Err(_) if cmd == b"md" || cmd == b"ma" => {
            return Some((&b"CLIENT_ERROR invalid or duplicate flag\r\n"[..], false))
        }
        Err(e) => return Some((e, swallow)),
    };
    if f.tokens.iter().any(|t| t[0] == b'O' && t.len() > MAX_OPAQUE) {
        return Some((&b"CLIENT_ERROR opaque token too long\r\n"[..], swallow));
    }
    match (cmd, f.mode) {
        (b"ms", Some(m)) if !b"EAPRS".contains(&m) => {
            Some((&b"CLIENT_ERROR invalid mode for ms M token\r\n"[..], true))
        }
        (b"ma", Some(m)) if !b"I+D-".contains(&m) => {
            Some((&b"CLIENT_ERROR invalid mode for ma M token\r\n"[..], false))
        }
        _ => None,
    }
}

/// Appends ` k<key>` as memcached's `META_KEY` does (base64 and ` b` for a binary key).
fn put_key(o: &mut Vec<u8>, key: &[u8], binary: bool) {
    o.extend_from_slice(b" k");
    if binary {
        o.extend_from_slice(&base64_encode(key));
        o.extend_from_slice(b" b");
    } else {
        o.extend_from_slice(key);
    }
}

/// The `O` and `k` flags echoed (what a miss or a status-only reply carries).
fn put_opaque_and_key(o: &mut Vec<u8>, f: &Flags) {
    for t in &f.tokens {
        match t[0] {
            b'O' => {
                o.push(b' ');
                o.extend_from_slice(t);
            }
            b'k' => put_key(o, &f.key, f.key_binary),
            _ => {}
        }
    }
}

fn error(o: &mut Vec<u8>, e: &[u8]) {
    o.extend_from_slice(e);
}

/// `me <key> [b]`: memcached's debug line for an item.
pub fn debug(store: &Store, key: &[u8], rest: &[&[u8]], o: &mut Vec<u8>) {
    let binary = rest.first().is_some_and(|t| *t == b"b");
    let key: Cow<[u8]> = if binary {
        match base64_decode(key) {
            Some(k) => Cow::Owned(k),
            None => return error(o, b"CLIENT_ERROR bad command line format\r\n"),
        }
    } else {
        Cow::Borrowed(key)
    };
    let mut l = store.lock(&key);
    let now = l.now();
    let Some((class, total)) = l.placement() else {
        return o.extend_from_slice(b"EN\r\n");
    };
    let item = l.current().expect("live: placed");
    o.extend_from_slice(b"ME ");
    if item.meta.key_binary {
        o.extend_from_slice(&base64_encode(&key));
    } else {
        o.extend_from_slice(&key);
    }
    let exp = if item.expires == 0 { -1 } else { now - item.expires };
    let fetch = if item.meta.fetched { "yes" } else { "no" };
    let _ = write!(
        o,
        " exp={exp} la={} cas={} fetch={fetch} cls={class} size={total}\r\n",
        now - item.meta.accessed,
        item.cas
    );
}

/// `mg`.
pub fn get(store: &Store, key: &[u8], flag_tokens: &[&[u8]], o: &mut Vec<u8>) {
    let f = match preparse(key, flag_tokens) {
        Ok(f) => f,
        Err(e) => return error(o, e),
    };
    let c = &store.counters;
    let mut l = store.lock(&f.key);
    let now = l.now();
    let mut created = false;
    if l.item().is_none() && f.vivify.is_some() {
        // An empty item, its expiry set by the `N` token below (memcached's order).
        l.link(Vec::new(), 0, 0, ItemMeta { key_binary: f.key_binary, ..ItemMeta::default() });
        created = true;
    }
    let ttl_set = f.ttl.is_some();
    let Some(item) = l.item() else {
        if ttl_set {
            c.cmd_touch.fetch_add(1, Relaxed);
            c.touch_misses.fetch_add(1, Relaxed);
        } else {
            c.cmd_get.fetch_add(1, Relaxed);
            c.get_misses.fetch_add(1, Relaxed);
        }
        if !f.no_reply {
            o.extend_from_slice(b"EN");
            put_opaque_and_key(o, &f);
            o.extend_from_slice(b"\r\n");
        }
        return;
    };
    let value = if f.value { Some(item.value.clone()) } else { None };
    match &value {
        Some(v) => {
            let _ = write!(o, "VA {}", v.len());
        }
        None => o.extend_from_slice(b"HD"),
    }
    let mut won = false;
    for t in &f.tokens {
        let item = l.current().expect("linked");
        match t[0] {
            b'T' => l.set_expiry(store.expiry(f.ttl.expect("parsed"))),
            b'N' if created => {
                l.set_expiry(store.expiry(f.vivify.expect("parsed")));
                won = true;
            }
            b'R' => {
                let recache = store.expiry(f.recache.expect("parsed"));
                if !item.meta.token_sent && !created && item.expires != 0 && item.expires < recache {
                    won = true;
                }
            }
            b's' => {
                let _ = write!(o, " s{}", item.value.len());
            }
            b't' => {
                let _ = write!(o, " t{}", store.ttl(item));
            }
            b'c' => {
                let _ = write!(o, " c{}", item.cas);
            }
            b'f' => {
                let _ = write!(o, " f{}", item.flags);
            }
            b'l' => {
                let _ = write!(o, " l{}", now - item.meta.accessed);
            }
            b'h' => {
                let _ = write!(o, " h{}", u8::from(item.meta.fetched));
            }
            b'O' => {
                o.push(b' ');
                o.extend_from_slice(t);
            }
            b'k' => {
                let binary = item.meta.key_binary;
                put_key(o, &f.key, binary);
            }
            _ => {}
        }
    }
    let meta = l.meta().expect("linked");
    if meta.token_sent {
        o.extend_from_slice(b" Z");
    }
    if meta.stale {
        o.extend_from_slice(b" X");
        if !meta.token_sent {
            won = true;
        }
    }
    if won {
        o.extend_from_slice(b" W");
        meta.token_sent = true;
    }
    // The bump comes after the reply, so `h` and `l` show the state before this read.
    if !f.no_update {
        meta.fetched = true;
        meta.accessed = now;
    }
    o.extend_from_slice(b"\r\n");
    if let Some(v) = value {
        o.extend_from_slice(&v);
        o.extend_from_slice(b"\r\n");
    }
    if ttl_set {
        c.cmd_touch.fetch_add(1, Relaxed);
        c.touch_hits.fetch_add(1, Relaxed);
    } else {
        c.cmd_get.fetch_add(1, Relaxed);
        c.get_hits.fetch_add(1, Relaxed);
    }
}

/// `ms`.
pub fn set(store: &Store, key: &[u8], data: &[u8], flag_tokens: &[&[u8]], o: &mut Vec<u8>) {
    let f = match preparse(key, flag_tokens) {
        Ok(f) => f,
        Err(e) => return error(o, e),
    };
    store.counters.cmd_set.fetch_add(1, Relaxed);
    let mut op = match f.mode {
        None | Some(b'S') => StoreOp::Set,
        Some(b'E') => StoreOp::Add,
        Some(b'A') => StoreOp::Append,
        Some(b'P') => StoreOp::Prepend,
        Some(b'R') => StoreOp::Replace,
        Some(_) => return error(o, b"CLIENT_ERROR invalid mode for ms M token\r\n"),
    };
    // memcached: a CAS turns a set or a replace into a cas.
    if f.cas.is_some() && matches!(op, StoreOp::Set | StoreOp::Replace) {
        op = StoreOp::Cas;
    }
    let req_cas = f.cas.unwrap_or(0);
    store.prepare_write(f.key.len(), f.client_flags, data.len());
    let mut l = store.lock(&f.key);
    let new_meta = ItemMeta { key_binary: f.key_binary, ..ItemMeta::default() };
    let expires = store.expiry(f.ttl.unwrap_or(0));
    let old = l.item().map(|i| (i.cas, i.flags, i.expires, i.meta, i.value.clone()));
    let (result, cas) = match old {
        Some((old_cas, old_flags, old_expires, old_meta, old_value)) => {
            let matched = req_cas != 0 && req_cas == old_cas;
            let stale = f.set_stale && op == StoreOp::Cas && req_cas != 0 && req_cas < old_cas;
            match op {
                StoreOp::Add => (Stored::NotStored, 0),
                StoreOp::Cas if matched => {
                    store.counters.cas_hits.fetch_add(1, Relaxed);
                    (Stored::Stored, l.link(data.to_vec(), f.client_flags, expires, new_meta))
                }
                StoreOp::Cas if stale => {
                    // A stale value is accepted under an older CAS: it keeps the old TTL and
                    // stays stale, its token still sent if it was.
                    store.counters.cas_hits.fetch_add(1, Relaxed);
                    let meta = ItemMeta { stale: true, token_sent: old_meta.token_sent, ..new_meta };
                    (Stored::Stored, l.link(data.to_vec(), f.client_flags, old_expires, meta))
                }
                StoreOp::Cas => {
                    store.counters.cas_badval.fetch_add(1, Relaxed);
                    (Stored::Exists, 0)
                }
                StoreOp::Append | StoreOp::Prepend if req_cas != 0 && !matched => (Stored::Exists, 0),
                StoreOp::Append | StoreOp::Prepend => {
                    let v = if op == StoreOp::Append {
                        [&old_value[..], data].concat()
                    } else {
                        [data, &old_value[..]].concat()
                    };
                    (
                        Stored::Stored,
                        l.link(v, old_flags, old_expires, ItemMeta { key_binary: f.key_binary, ..old_meta }),
                    )
                }
                StoreOp::Set | StoreOp::Replace => {
                    (Stored::Stored, l.link(data.to_vec(), f.client_flags, expires, new_meta))
                }
            }
        }
        None => match op {
            StoreOp::Add | StoreOp::Set => (Stored::Stored, l.link(data.to_vec(), f.client_flags, expires, new_meta)),
            StoreOp::Cas => {
                store.counters.cas_misses.fetch_add(1, Relaxed);
                (Stored::NotFound, 0)
            }
            StoreOp::Replace | StoreOp::Append | StoreOp::Prepend => (Stored::NotStored, 0),
        },
    };
    drop(l);
    if result == Stored::Stored && f.no_reply {
        return;
    }
    o.extend_from_slice(match result {
        Stored::Stored => b"HD",
        Stored::NotStored => b"NS",
        Stored::Exists => b"EX",
        Stored::NotFound => b"NF",
    });
    for t in &f.tokens {
        match t[0] {
            b'O' => {
                o.push(b' ');
                o.extend_from_slice(t);
            }
            b'k' => put_key(o, &f.key, f.key_binary),
            b'c' => {
                let _ = write!(o, " c{cas}");
            }
            _ => {}
        }
    }
    o.extend_from_slice(b"\r\n");
}

/// `md`.
pub fn delete(store: &Store, key: &[u8], flag_tokens: &[&[u8]], o: &mut Vec<u8>) {
    let Ok(f) = preparse(key, flag_tokens) else {
        return error(o, b"CLIENT_ERROR invalid or duplicate flag\r\n");
    };
    let c = &store.counters;
    let mut l = store.lock(&f.key);
    let status: &[u8] = match l.item().map(|i| i.cas) {
        Some(cas) if f.cas.is_some_and(|want| want != cas) => {
            c.delete_misses.fetch_add(1, Relaxed);
            b"EX"
        }
        Some(_) if f.set_stale => {
            // Invalidate: kept, marked stale, a new CAS, the token free to be won again.
            if let Some(ttl) = f.ttl {
                l.set_expiry(store.expiry(ttl));
            }
            let meta = l.meta().expect("linked");
            meta.stale = true;
            meta.token_sent = false;
            l.new_cas();
            b"HD"
        }
        Some(_) => {
            l.unlink();
            c.delete_hits.fetch_add(1, Relaxed);
            b"HD"
        }
        None => {
            c.delete_misses.fetch_add(1, Relaxed);
            b"NF"
        }
    };
    if status == b"HD" && f.no_reply {
        return;
    }
    o.extend_from_slice(status);
    put_opaque_and_key(o, &f);
    o.extend_from_slice(b"\r\n");
}

/// `ma`.
pub fn arith(store: &Store, key: &[u8], flag_tokens: &[&[u8]], o: &mut Vec<u8>) {
    let Ok(f) = preparse(key, flag_tokens) else {
        return error(o, b"CLIENT_ERROR invalid or duplicate flag\r\n");
    };
    let incr = match f.mode {
        None | Some(b'I' | b'+') => true,
        Some(b'D' | b'-') => false,
        Some(_) => return error(o, b"CLIENT_ERROR invalid mode for ma M token\r\n"),
    };
    let delta = f.delta.unwrap_or(1);
    let c = &store.counters;
    let (hits, misses) = if incr { (&c.incr_hits, &c.incr_misses) } else { (&c.decr_hits, &c.decr_misses) };
    let mut l = store.lock(&f.key);
    let old = l.item().map(|i| (i.cas, i.flags, i.expires, i.meta, i.value.clone()));
    // (the number as text, created by N, answered quietly under q)
    let outcome: Result<(String, bool, bool), &[u8]> = match old {
        Some((cas, ..)) if f.cas.is_some_and(|want| want != 0 && want != cas) => Err(b"EX"),
        Some((_, flags, expires, meta, value)) => match arith_value(&value, incr, delta) {
            Some((new, stored)) => {
                hits.fetch_add(1, Relaxed);
                l.link(stored, flags, expires, meta);
                Ok((new.to_string(), false, true))
            }
            None => return error(o, b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"),
        },
        None if f.vivify.is_some() => {
            let text = f.initial.to_string();
            l.link(text.clone().into_bytes(), 0, 0, ItemMeta { key_binary: f.key_binary, ..ItemMeta::default() });
            Ok((text, true, false))
        }
        None => {
            misses.fetch_add(1, Relaxed);
            Err(b"NF")
        }
    };
    let (text, created, quiet) = match outcome {
        Ok(x) => x,
        Err(status) => {
            o.extend_from_slice(status);
            put_opaque_and_key(o, &f);
            o.extend_from_slice(b"\r\n");
            return;
        }
    };
    let start = o.len();
    if f.value {
        let _ = write!(o, "VA {}", text.len());
    } else {
        o.extend_from_slice(b"HD");
    }
    for t in &f.tokens {
        match t[0] {
            b'c' => {
                let cas = l.current().expect("linked").cas;
                let _ = write!(o, " c{cas}");
            }
            b't' => {
                let ttl = store.ttl(l.current().expect("linked"));
                let _ = write!(o, " t{ttl}");
            }
            b'T' => l.set_expiry(store.expiry(f.ttl.expect("parsed"))),
            b'N' if created => l.set_expiry(store.expiry(f.vivify.expect("parsed"))),
            b'O' => {
                o.push(b' ');
                o.extend_from_slice(t);
            }
            b'k' => put_key(o, &f.key, f.key_binary),
            _ => {}
        }
    }
    if f.value {
        o.extend_from_slice(b"\r\n");
        o.extend_from_slice(text.as_bytes());
    }
    o.extend_from_slice(b"\r\n");
    if quiet && f.no_reply {
        o.truncate(start);
    }
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding, as memcached encodes binary keys.
pub fn base64_encode(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(BASE64[(n >> (18 - 6 * i)) as usize & 63]);
            } else {
                out.push(b'=');
            }
        }
    }
    out
}

/// Decodes standard base64 (padding optional at the end); `None` for anything else or an empty
/// result, as memcached's decoder answers 0 then.
pub fn base64_decode(text: &[u8]) -> Option<Vec<u8>> {
    let text = text.strip_suffix(b"==").or_else(|| text.strip_suffix(b"=")).unwrap_or(text);
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for &c in text {
        let v = BASE64.iter().position(|&b| b == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        // memcached's t/metaget.t: "tesuto" in katakana.
        let k = base64_decode(b"44OG44K544OI").expect("valid");
        assert_eq!(String::from_utf8(k.clone()).unwrap(), "テスト");
        assert_eq!(base64_encode(&k), b"44OG44K544OI");
        for n in 0..20u8 {
            let bytes: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
            if n > 0 {
                assert_eq!(base64_decode(&base64_encode(&bytes)).as_deref(), Some(&bytes[..]), "{n} bytes");
            }
        }
        assert_eq!(base64_decode(b"a"), None);
        assert_eq!(base64_decode(b"ab!d"), None);
    }

    /// A command's own `T` may make the item it holds expire; the rest of the command still
    /// answers from that item (the fuzzer found `ma k T-1 t` panicking on it).
    #[test]
    fn a_command_that_expires_its_item_still_answers() {
        let store = Store::new(1 << 20);
        store.store(StoreOp::Set, b"k", 0, 0, b"1", 0);
        let mut o = Vec::new();
        arith(&store, b"k", &[b"T-1", b"t", b"c"], &mut o);
        assert!(o.starts_with(b"HD t0 c"), "{}", String::from_utf8_lossy(&o));
        store.store(StoreOp::Set, b"k", 0, 0, b"1", 0);
        o.clear();
        get(&store, b"k", &[b"T-1", b"t", b"v", b"h"], &mut o);
        assert_eq!(o, b"VA 1 t0 h0\r\n1\r\n");
        o.clear();
        get(&store, b"k", &[b"v"], &mut o);
        assert_eq!(o, b"EN\r\n", "and it is gone after");
    }

    #[test]
    fn flag_errors_are_memcacheds() {
        assert_eq!(preparse(b"k", &[b"v", b"v"]).unwrap_err(), b"CLIENT_ERROR duplicate flag\r\n");
        assert_eq!(preparse(b"k", &[b"x"]).unwrap_err(), b"CLIENT_ERROR invalid flag\r\n");
        assert_eq!(preparse(b"k", &[b"Tx", b"v"]).unwrap_err(), b"CLIENT_ERROR bad token in command line format\r\n");
        assert_eq!(preparse(b"k", &[b"MEE"]).unwrap_err(), b"CLIENT_ERROR incorrect length for M token\r\n");
        assert_eq!(check(&[b"md", b"k", b"x"]), Some((&b"CLIENT_ERROR invalid or duplicate flag\r\n"[..], false)));
        assert_eq!(check(&[b"ms", b"k", b"2", b"x"]), Some((&b"CLIENT_ERROR invalid flag\r\n"[..], true)));
        assert_eq!(check(&[b"ms", b"k"]), Some((&b"CLIENT_ERROR bad command line format\r\n"[..], false)));
        assert_eq!(
            check(&[b"ms", b"k", b"2", b"MZ"]),
            Some((&b"CLIENT_ERROR invalid mode for ms M token\r\n"[..], true))
        );
        assert_eq!(check(&[b"mg", b"k", b"s", b"v"]), None);
    }
}
