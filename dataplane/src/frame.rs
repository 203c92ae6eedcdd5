//! Ethernet / IPv4 / UDP framing for the DPDK transport, which sees raw frames: parse a frame
//! addressed to our IP and UDP port, and build the reply frame (MACs, addresses and ports
//! swapped, IPv4 header checksum computed, UDP checksum 0 as IPv4 allows). Plain functions over
//! byte slices, tested without DPDK; nothing here panics on any input.

use std::net::Ipv4Addr;

/// Bytes of an Ethernet header (no VLAN tag).
pub const ETH_LEN: usize = 14;
/// Bytes of an IPv4 header without options.
pub const IPV4_LEN: usize = 20;
/// Bytes of a UDP header.
pub const UDP_LEN: usize = 8;
/// Bytes before a datagram's payload.
pub const HEADERS_LEN: usize = ETH_LEN + IPV4_LEN + UDP_LEN;
const ETHERTYPE_IPV4: u16 = 0x0800;
const PROTO_UDP: u8 = 17;

/// Where a datagram came from: enough to answer it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// Its Ethernet address.
    pub mac: [u8; 6],
    /// Its IPv4 address.
    pub ip: Ipv4Addr,
    /// Its UDP port.
    pub port: u16,
}

/// Why a frame is not a datagram for us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Shorter than its headers say.
    Truncated,
    /// Not an IPv4 frame (ARP, IPv6, ...).
    NotIpv4,
    /// IPv4 options, fragments or a bad header checksum: not handled by this data plane.
    UnsupportedIp,
    /// Not UDP.
    NotUdp,
    /// Another destination address or port.
    NotForUs,
    /// The IP or UDP length disagrees with the frame.
    BadLength,
}

fn be16(b: &[u8], o: usize) -> u16 {
    u16::from_be_bytes([b[o], b[o + 1]])
}

/// Internet checksum of `b` (even length here: the 20-byte IPv4 header).
pub fn ipv4_checksum(b: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in b.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The UDP payload of `frame` and its sender, if it is an IPv4/UDP datagram to `ip:port`.
pub fn parse(frame: &[u8], ip: Ipv4Addr, port: u16) -> Result<(&[u8], Peer), FrameError> {
    if frame.len() < HEADERS_LEN {
        return Err(FrameError::Truncated);
    }
    if be16(frame, 12) != ETHERTYPE_IPV4 {
        return Err(FrameError::NotIpv4);
    }
    let iph = &frame[ETH_LEN..ETH_LEN + IPV4_LEN];
    if iph[0] != 0x45 || be16(iph, 6) & 0x3fff != 0 || ipv4_checksum(iph) != 0 {
        return Err(FrameError::UnsupportedIp);
    }
    if iph[9] != PROTO_UDP {
        return Err(FrameError::NotUdp);
    }
    let dst = Ipv4Addr::new(iph[16], iph[17], iph[18], iph[19]);
    let udp = &frame[ETH_LEN + IPV4_LEN..];
    if dst != ip || be16(udp, 2) != port {
        return Err(FrameError::NotForUs);
    }
    let total = usize::from(be16(iph, 2));
    let udp_len = usize::from(be16(udp, 4));
    if total < IPV4_LEN + UDP_LEN || ETH_LEN + total > frame.len() || udp_len != total - IPV4_LEN {
        return Err(FrameError::BadLength);
    }
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&frame[6..12]);
    let peer = Peer { mac, ip: Ipv4Addr::new(iph[12], iph[13], iph[14], iph[15]), port: be16(udp, 0) };
    Ok((&udp[UDP_LEN..udp_len], peer))
}

/// Writes an Ethernet/IPv4/UDP frame from `(src_mac, src_ip, src_port)` to `to` carrying
/// `payload` into `out`; returns its length (None if `out` is too small or the payload too big).
pub fn build(
    out: &mut [u8],
    src_mac: [u8; 6],
    src_ip: Ipv4Addr,
    src_port: u16,
    to: &Peer,
    payload: &[u8],
) -> Option<usize> {
    let len = HEADERS_LEN + payload.len();
    if out.len() < len || IPV4_LEN + UDP_LEN + payload.len() > usize::from(u16::MAX) {
        return None;
    }
    let f = &mut out[..len];
    f[0..6].copy_from_slice(&to.mac);
    f[6..12].copy_from_slice(&src_mac);
    f[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    let total = (IPV4_LEN + UDP_LEN + payload.len()) as u16;
    {
        let ip = &mut f[ETH_LEN..ETH_LEN + IPV4_LEN];
        ip.copy_from_slice(&[0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, PROTO_UDP, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip[12..16].copy_from_slice(&src_ip.octets());
        ip[16..20].copy_from_slice(&to.ip.octets());
        let c = ipv4_checksum(ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
    }
    let udp = &mut f[ETH_LEN + IPV4_LEN..];
    udp[0..2].copy_from_slice(&src_port.to_be_bytes());
    udp[2..4].copy_from_slice(&to.port.to_be_bytes());
    udp[4..6].copy_from_slice(&((UDP_LEN + payload.len()) as u16).to_be_bytes());
    udp[6..8].copy_from_slice(&[0, 0]);
    udp[UDP_LEN..].copy_from_slice(payload);
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

    fn client() -> Peer {
        Peer { mac: [2, 0, 0, 0, 0, 2], ip: Ipv4Addr::new(10, 77, 0, 2), port: 40000 }
    }

    fn frame_to_me(payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 2048];
        // A frame from the client to us: build it "from" the client.
        let me = Peer { mac: MAC, ip: ME, port: 7000 };
        let c = client();
        let n = build(&mut f, c.mac, c.ip, c.port, &me, payload).unwrap();
        f.truncate(n);
        f
    }

    #[test]
    fn round_trip_and_checksum() {
        let f = frame_to_me(b"hello");
        assert_eq!(ipv4_checksum(&f[ETH_LEN..ETH_LEN + IPV4_LEN]), 0, "a valid header sums to 0");
        let (payload, peer) = parse(&f, ME, 7000).unwrap();
        assert_eq!(payload, b"hello");
        assert_eq!(peer, client());
    }

    #[test]
    fn known_header_checksum() {
        // The classic example header (checksum field zeroed): checksum 0xb861.
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8,
            0x00, 0xc7,
        ];
        assert_eq!(ipv4_checksum(&h), 0xb861);
    }

    #[test]
    fn frames_not_for_us_are_rejected_without_panics() {
        let f = frame_to_me(b"x");
        assert_eq!(parse(&f, ME, 7001), Err(FrameError::NotForUs));
        assert_eq!(parse(&f, Ipv4Addr::new(10, 77, 0, 9), 7000), Err(FrameError::NotForUs));
        assert_eq!(parse(&f[..20], ME, 7000), Err(FrameError::Truncated));
        let mut arp = f.clone();
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(parse(&arp, ME, 7000), Err(FrameError::NotIpv4));
        let mut tcp = f.clone();
        tcp[ETH_LEN + 9] = 6;
        assert_eq!(parse(&tcp, ME, 7000), Err(FrameError::UnsupportedIp), "checksum no longer matches");
        let mut frag = f.clone();
        frag[ETH_LEN + 6] = 0x20;
        assert_eq!(parse(&frag, ME, 7000), Err(FrameError::UnsupportedIp));
        let mut short_total = f.clone();
        short_total.truncate(f.len() - 1);
        assert_eq!(parse(&short_total, ME, 7000), Err(FrameError::BadLength));
        let mut x = 12345u64;
        for len in 0..200 {
            let buf: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (x >> 33) as u8
                })
                .collect();
            let _ = parse(&buf, ME, 7000);
        }
    }

    #[test]
    fn build_refuses_small_buffers() {
        let mut small = [0u8; 50];
        assert_eq!(build(&mut small, MAC, ME, 1, &client(), &[0u8; 20]), None);
    }
}
