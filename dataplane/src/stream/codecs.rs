//! Two codecs: the project's own protocol on a stream, and newline-delimited lines.

use super::{Codec, CodecError, Frame};
use crate::protocol::{self, WireError, REQUEST_LEN};
use synergy::request::{Reply, Request};

/// The project's wire protocol (`crate::protocol`) on a stream: each message is a header
/// followed by its body, exactly as in one UDP datagram, back to back.
#[derive(Debug, Default, Clone, Copy)]
pub struct SynergyCodec;

impl Codec for SynergyCodec {
    fn decode(&self, buf: &[u8], max_body: usize) -> Result<Option<(Frame, usize)>, CodecError> {
        if buf.len() < REQUEST_LEN {
            return Ok(None);
        }
        let len = REQUEST_LEN + protocol::request_body_len(&buf[..REQUEST_LEN]).map_err(|e| error(&e))?;
        if len - REQUEST_LEN > max_body {
            return Err(error(&WireError::BodyTooLarge { len: len - REQUEST_LEN, max: max_body }));
        }
        if buf.len() < len {
            return Ok(None);
        }
        let req = protocol::decode_request(&buf[..len], max_body).map_err(|e| error(&e))?;
        Ok(Some((Frame::Request(req), len)))
    }

    fn encode(&self, reply: &Reply, out: &mut Vec<u8>) {
        out.extend_from_slice(&protocol::encode_reply_header(reply));
        out.extend_from_slice(&reply.body);
    }
}

fn error(e: &WireError) -> CodecError {
    CodecError { message: format!("synergy protocol: {e}"), reply: None }
}

/// Lines: each request is one line (its bytes without the `\n`, and a `\r` before it, as the
/// body); each reply is its body and `\n`. What a `nc` session speaks; the stream tests use it.
#[derive(Debug, Default, Clone, Copy)]
pub struct LineCodec;

impl Codec for LineCodec {
    fn decode(&self, buf: &[u8], max_body: usize) -> Result<Option<(Frame, usize)>, CodecError> {
        let Some(end) = buf.iter().position(|&b| b == b'\n') else {
            if buf.len() > max_body + 1 {
                return Err(CodecError {
                    message: format!("a line longer than {max_body} bytes"),
                    reply: Some(b"ERROR line too long\n".to_vec()),
                });
            }
            return Ok(None);
        };
        let line = buf[..end].strip_suffix(b"\r").unwrap_or(&buf[..end]);
        if line.len() > max_body {
            return Err(CodecError {
                message: format!("a line of {} bytes (at most {max_body})", line.len()),
                reply: Some(b"ERROR line too long\n".to_vec()),
            });
        }
        Ok(Some((Frame::Request(Request { body: synergy::Body::from_slice(line), ..Request::default() }), end + 1)))
    }

    fn encode(&self, reply: &Reply, out: &mut Vec<u8>) {
        out.extend_from_slice(&reply.body);
        out.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::encode_request;

    #[test]
    fn the_synergy_codec_waits_for_whole_messages_and_takes_them_back_to_back() {
        let a = encode_request(&Request { id: 1, body: synergy::Body::from_slice(b"hello"), ..Request::default() });
        let b = encode_request(&Request { id: 2, ..Request::default() });
        let stream = [a.clone(), b.clone()].concat();
        for cut in 0..a.len() {
            assert!(SynergyCodec.decode(&stream[..cut], 1 << 16).unwrap().is_none(), "{cut} bytes");
        }
        let Some((Frame::Request(r), used)) = SynergyCodec.decode(&stream, 1 << 16).unwrap() else { panic!() };
        assert_eq!((r.id, r.body(), used), (1, &b"hello"[..], a.len()));
        let Some((Frame::Request(r), used)) = SynergyCodec.decode(&stream[a.len()..], 1 << 16).unwrap() else {
            panic!()
        };
        assert_eq!((r.id, used), (2, b.len()));
        assert!(SynergyCodec.decode(&stream, 4).is_err(), "a body over the limit");
        assert!(SynergyCodec.decode(&[0u8; 200], 1 << 16).is_err(), "not a request");
    }

    #[test]
    fn the_line_codec_splits_lines_and_bounds_them() {
        let Some((Frame::Request(r), used)) = LineCodec.decode(b"get a\r\nget b\n", 100).unwrap() else { panic!() };
        assert_eq!((r.body(), used), (&b"get a"[..], 7));
        assert!(LineCodec.decode(b"partial", 100).unwrap().is_none());
        assert!(LineCodec.decode(&[b'x'; 102], 100).is_err());
        let mut out = Vec::new();
        LineCodec.encode(&Reply::default().with_body(b"ok"), &mut out);
        assert_eq!(out, b"ok\n");
    }
}
