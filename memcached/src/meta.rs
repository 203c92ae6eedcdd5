//! memcached's meta protocol (`mn`, `mg`, `ms`, `md`, `ma`) over the same store: replies as
//! memcached 1.6.18 gives them (`HD`, `VA`, `EN`, `NF`, `NS`, `EX`, `MN`), the requested flags
//! echoed in the order they were asked for.

use crate::store::{Arith, Store, Stored};
use crate::text::StoreOp;
use std::io::Write as _;

fn arg<'a>(flags: &[&'a [u8]], letter: u8) -> Option<&'a [u8]> {
    flags.iter().find(|f| f[0] == letter).map(|f| &f[1..])
}

fn num<T: std::str::FromStr>(t: &[u8]) -> Option<T> {
    std::str::from_utf8(t).ok()?.parse().ok()
}

fn has(flags: &[&[u8]], letter: u8) -> bool {
    flags.iter().any(|f| f[0] == letter)
}

/// The opaque (`O`) flag echoed, if given.
fn opaque(flags: &[&[u8]], o: &mut Vec<u8>) {
    for f in flags.iter().filter(|f| f[0] == b'O') {
        o.push(b' ');
        o.extend_from_slice(f);
    }
}

pub fn get(store: &Store, key: &[u8], flags: &[&[u8]], o: &mut Vec<u8>) {
    store.counters.cmd_get.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let Some(item) = store.get(key, None) else {
        store.counters.get_misses.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if !has(flags, b'q') {
            o.extend_from_slice(b"EN\r\n");
        }
        return;
    };
    store.counters.get_hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let value = has(flags, b'v');
    if value {
        let _ = write!(o, "VA {}", item.value.len());
    } else {
        o.extend_from_slice(b"HD");
    }
    for f in flags {
        match f[0] {
            b'k' => {
                o.extend_from_slice(b" k");
                o.extend_from_slice(key);
            }
            b'f' => {
                let _ = write!(o, " f{}", item.flags);
            }
            b'c' => {
                let _ = write!(o, " c{}", item.cas);
            }
            b's' => {
                let _ = write!(o, " s{}", item.value.len());
            }
            b't' => {
                let _ = write!(o, " t{}", store.ttl(&item));
            }
            b'O' => {
                o.push(b' ');
                o.extend_from_slice(f);
            }
            _ => {}
        }
    }
    o.extend_from_slice(b"\r\n");
    if value {
        o.extend_from_slice(&item.value);
        o.extend_from_slice(b"\r\n");
    }
}

pub fn set(store: &Store, key: &[u8], data: &[u8], flags: &[&[u8]], o: &mut Vec<u8>) {
    store.counters.cmd_set.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let client_flags = arg(flags, b'F').and_then(num::<u32>).unwrap_or(0);
    let ttl = arg(flags, b'T').and_then(num::<i64>).unwrap_or(0);
    let cas = arg(flags, b'C').and_then(num::<u64>);
    let op = match (arg(flags, b'M').and_then(|m| m.first().copied()), cas) {
        (None | Some(b'S' | b's'), Some(_)) => StoreOp::Cas,
        (None | Some(b'S' | b's'), None) => StoreOp::Set,
        (Some(b'E' | b'e'), _) => StoreOp::Add,
        (Some(b'A' | b'a'), _) => StoreOp::Append,
        (Some(b'P' | b'p'), _) => StoreOp::Prepend,
        (Some(b'R' | b'r'), _) => StoreOp::Replace,
        _ => {
            o.extend_from_slice(b"CLIENT_ERROR invalid mode for ms STORE\r\n");
            return;
        }
    };
    let r = store.store(op, key, client_flags, ttl, data, cas.unwrap_or(0));
    if r == Stored::Stored && has(flags, b'q') {
        return;
    }
    o.extend_from_slice(match r {
        Stored::Stored => b"HD",
        Stored::NotStored => b"NS",
        Stored::Exists => b"EX",
        Stored::NotFound => b"NF",
    });
    opaque(flags, o);
    o.extend_from_slice(b"\r\n");
}

pub fn delete(store: &Store, key: &[u8], flags: &[&[u8]], o: &mut Vec<u8>) {
    let hit = store.delete(key);
    if hit && has(flags, b'q') {
        return;
    }
    o.extend_from_slice(if hit { b"HD" } else { b"NF" });
    opaque(flags, o);
    o.extend_from_slice(b"\r\n");
}

pub fn arith(store: &Store, key: &[u8], flags: &[&[u8]], o: &mut Vec<u8>) {
    let Some(delta) = arg(flags, b'D').map_or(Some(1), num::<u64>) else {
        o.extend_from_slice(b"CLIENT_ERROR invalid numeric delta argument\r\n");
        return;
    };
    let incr = match arg(flags, b'M').and_then(|m| m.first().copied()) {
        None | Some(b'I' | b'i' | b'+') => true,
        Some(b'D' | b'd' | b'-') => false,
        _ => {
            o.extend_from_slice(b"CLIENT_ERROR invalid mode for ma\r\n");
            return;
        }
    };
    match store.arith(key, incr, delta) {
        Arith::NotFound => {
            o.extend_from_slice(b"NF");
            opaque(flags, o);
            o.extend_from_slice(b"\r\n");
        }
        Arith::NonNumeric => o.extend_from_slice(b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"),
        Arith::Value(v) => {
            if has(flags, b'v') {
                let text = v.to_string();
                let _ = write!(o, "VA {}", text.len());
                opaque(flags, o);
                let _ = write!(o, "\r\n{text}\r\n");
            } else if !has(flags, b'q') {
                o.extend_from_slice(b"HD");
                opaque(flags, o);
                o.extend_from_slice(b"\r\n");
            }
        }
    }
}
