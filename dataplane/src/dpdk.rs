//! DPDK transport (`--transport dpdk`, cargo feature `dpdk`): one RX/TX queue pair per worker on
//! one DPDK port, polled in bursts; the worker runs the first request of a burst at once and
//! queues the rest on its local ring (the runtime's `pop_local`). The port has a software IPv4
//! address and UDP port; frames are parsed and built by `net::frame`, requests by
//! `net::protocol`, so the wire format is the kernel UDP transport's. Anything else that arrives
//! (ARP, other hosts' traffic, malformed requests) is counted and dropped: give clients a static
//! neighbour entry for the server's address.
//!
//! Binding: our own small C shim (`dataplane/dpdk/shim.c`) compiled against Debian 12's DPDK 22.11
//! (`libdpdk-dev`). The `dpdk-sys` crate on crates.io targets DPDK 18.05 and does not build
//! against 22.11; DPDK's fast path is static inline functions, which a shim compiles once.
//!
//! Bodies: a request and its reply each travel in one frame of the standard 1,500-byte MTU
//! (single-segment mbufs; IP fragments are not reassembled), so a request body is at most
//! `DPDK_MAX_REQUEST_BODY` (1,344) bytes and a reply body `DPDK_MAX_REPLY_BODY` (1,408). A longer
//! request is answered `status::TOO_LARGE`; a longer reply is replaced by a `TOO_LARGE` reply
//! without body and counted in `reply_errors`. Kernel UDP carries up to 64 KiB.
//!
//! Without the `dpdk` feature, `DpdkTransport::open` explains that and the server falls back to
//! kernel UDP.

use std::net::Ipv4Addr;
use synergy::request::{Reply, Request};
use synergy::transport::Transport;

/// What the DPDK transport needs: EAL arguments, the port (device name) and the address it serves.
#[derive(Debug, Clone)]
pub struct DpdkParams {
    /// EAL arguments, e.g. `--no-huge --in-memory --vdev=net_af_packet0,iface=veth0,qpairs=2`.
    pub eal_args: Vec<String>,
    /// DPDK device name, e.g. `net_af_packet0`.
    pub device: String,
    /// The IPv4 address it answers on.
    pub ip: Ipv4Addr,
    /// The UDP port it answers on.
    pub port: u16,
    /// Workers (one RX/TX queue pair each).
    pub workers: usize,
}

/// Why the DPDK transport could not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DpdkError {
    /// This build has no DPDK.
    #[error("this synergy was built without DPDK support (rebuild with `--features dpdk` after `apt-get install libdpdk-dev pkg-config`)")]
    NotBuilt,
    /// A worker count outside 1..=64.
    #[error("DPDK transport: {0} workers (1 to 64)")]
    Workers(usize),
    /// An EAL argument or the device name holds a NUL byte.
    #[error("a DPDK argument contains a NUL byte: {0:?}")]
    NulByte(String),
    /// `rte_eal_init` failed.
    #[error("DPDK EAL initialisation failed (rte_errno {rte_errno}): check the EAL arguments {args:?}")]
    Eal {
        /// DPDK's error number.
        rte_errno: i32,
        /// The arguments it was given.
        args: Vec<String>,
    },
    /// No DPDK device of that name.
    #[error("DPDK has no device {0:?} (give it with --vdev or a PCI address in the EAL arguments)")]
    NoDevice(String),
    /// The port could not be configured or started.
    #[error("cannot set up DPDK port {device} with {queues} queue pairs: error {code}")]
    PortSetup {
        /// The device.
        device: String,
        /// Queue pairs asked for.
        queues: usize,
        /// DPDK's return code.
        code: i32,
    },
}

#[cfg(feature = "dpdk")]
pub use imp::DpdkTransport;

#[cfg(not(feature = "dpdk"))]
/// Stands in for the DPDK transport in a build without the `dpdk` feature: `open` says how to get one.
pub struct DpdkTransport(());

#[cfg(not(feature = "dpdk"))]
impl DpdkTransport {
    /// Fails: this build has no DPDK (the error says how to build one).
    pub fn open(_p: &DpdkParams) -> Result<DpdkTransport, DpdkError> {
        Err(DpdkError::NotBuilt)
    }
    /// Nothing to close.
    pub fn close(&self) {}
    /// All zero.
    pub fn counters(&self) -> DpdkSnapshot {
        DpdkSnapshot::default()
    }
}

#[cfg(not(feature = "dpdk"))]
impl Transport for DpdkTransport {
    fn poll(&self, _: usize, _: &mut Vec<Request>, _: usize) {}
    fn backlog(&self, _: usize) -> usize {
        0
    }
    fn reports_backlog(&self) -> bool {
        false
    }
    fn reply(&self, _: usize, _: Reply) {}
    fn finished(&self) -> bool {
        true
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
/// The DPDK transport's counters.
pub struct DpdkSnapshot {
    /// Frames received.
    pub frames: u64,
    /// Frames that were not an IPv4/UDP datagram to our address (ARP, other traffic).
    pub not_for_us: u64,
    /// Datagrams to us that were not well-formed requests.
    pub malformed: u64,
    /// Reply frames sent.
    pub replies: u64,
    /// Reply frames the device did not take.
    pub reply_errors: u64,
}

/// The longest request body the DPDK transport takes: one 1,500-byte IP packet less the IPv4,
/// UDP and request headers.
pub const DPDK_MAX_REQUEST_BODY: usize = 1_500 - 20 - 8 - crate::protocol::REQUEST_LEN;
/// The longest reply body it sends.
pub const DPDK_MAX_REPLY_BODY: usize = 1_500 - 20 - 8 - crate::protocol::REPLY_LEN;

#[cfg(feature = "dpdk")]
mod imp {
    use super::*;
    use crate::frame::{self, Peer};
    use crate::protocol::{decode_request, encode_reply_header, salvage_request_id, WireError, REPLY_LEN};
    use std::ffi::{c_char, c_int, CString};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Mutex;
    use synergy::clock;
    use synergy::request::status;

    extern "C" {
        fn syn_dpdk_init(argc: c_int, argv: *mut *mut c_char) -> c_int;
        fn syn_dpdk_port_by_name(name: *const c_char, port: *mut u16) -> c_int;
        fn syn_dpdk_port_setup(port: u16, queues: u16, nb_mbufs: u32) -> c_int;
        fn syn_dpdk_port_stop(port: u16) -> c_int;
        fn syn_dpdk_mac(port: u16, mac: *mut u8) -> c_int;
        fn syn_dpdk_rx(port: u16, queue: u16, frames: *mut u8, lens: *mut u16, max: u16, cap: u16) -> u16;
        fn syn_dpdk_tx(port: u16, queue: u16, frame: *const u8, len: u16) -> c_int;
    }

    const FRAME_CAP: usize = 2048;
    const BURST: usize = 32;

    /// EAL can be initialised once per process.
    static EAL: Mutex<bool> = Mutex::new(false);

    #[derive(Default)]
    struct Counters {
        frames: AtomicU64,
        not_for_us: AtomicU64,
        malformed: AtomicU64,
        replies: AtomicU64,
        reply_errors: AtomicU64,
    }

    /// Per worker: its RX burst buffer (only its own worker polls it).
    struct Queue {
        frames: std::cell::UnsafeCell<Vec<u8>>,
        lens: std::cell::UnsafeCell<[u16; BURST]>,
    }

    // SAFETY: queue `w` is only touched by `poll(w)`, which the `Transport` contract allows one
    // thread at a time (worker `w`, or under a baseline policy whichever worker holds `w`'s
    // polling flag, whose acquire/release orders the handovers).
    unsafe impl Sync for Queue {}

    /// DPDK: one RX/TX queue pair per worker on one port, frames parsed and built by `frame`.
    pub struct DpdkTransport {
        port: u16,
        mac: [u8; 6],
        ip: Ipv4Addr,
        udp_port: u16,
        queues: Box<[Queue]>,
        counters: Counters,
        closed: AtomicBool,
    }

    fn cpu_affinity() -> libc::cpu_set_t {
        // SAFETY: cpu_set_t is plain data; sched_getaffinity writes at most its size.
        unsafe {
            let mut s: libc::cpu_set_t = std::mem::zeroed();
            libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut s);
            s
        }
    }

    impl DpdkTransport {
        /// Initialises the EAL with `p.eal_args`, and starts `p.device` with a queue pair per worker.
        pub fn open(p: &DpdkParams) -> Result<DpdkTransport, DpdkError> {
            if p.workers == 0 || p.workers > 64 {
                return Err(DpdkError::Workers(p.workers));
            }
            {
                let mut up = EAL.lock().unwrap_or_else(|e| e.into_inner());
                if !*up {
                    let mut args: Vec<CString> = std::iter::once("synergy".to_string())
                        .chain(p.eal_args.iter().cloned())
                        .map(|a| CString::new(a.clone()).map_err(|_| DpdkError::NulByte(a)))
                        .collect::<Result<_, _>>()?;
                    let mut argv: Vec<*mut c_char> = args.iter_mut().map(|a| a.as_ptr() as *mut c_char).collect();
                    // EAL pins the calling thread to its main lcore; the runtime places its own
                    // threads, so the caller's affinity is restored afterwards.
                    let saved = cpu_affinity();
                    // SAFETY: argv points at NUL-terminated strings that outlive the call (EAL
                    // may keep pointers to them: `args` is leaked below).
                    let r = unsafe { syn_dpdk_init(argv.len() as c_int, argv.as_mut_ptr()) };
                    // SAFETY: restores this thread's previous affinity mask.
                    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &saved) };
                    if r != 0 {
                        return Err(DpdkError::Eal { rte_errno: -r, args: p.eal_args.clone() });
                    }
                    std::mem::forget(args);
                    *up = true;
                }
            }
            let name = CString::new(p.device.clone()).map_err(|_| DpdkError::NulByte(p.device.clone()))?;
            let mut port = 0u16;
            // SAFETY: valid C string and out-pointer.
            if unsafe { syn_dpdk_port_by_name(name.as_ptr(), &mut port) } != 0 {
                return Err(DpdkError::NoDevice(p.device.clone()));
            }
            // SAFETY: plain calls on a port DPDK reported.
            let r = unsafe { syn_dpdk_port_setup(port, p.workers as u16, 8191) };
            if r != 0 {
                return Err(DpdkError::PortSetup { device: p.device.clone(), queues: p.workers, code: r });
            }
            let mut mac = [0u8; 6];
            // SAFETY: `mac` has 6 bytes.
            unsafe { syn_dpdk_mac(port, mac.as_mut_ptr()) };
            Ok(DpdkTransport {
                port,
                mac,
                ip: p.ip,
                udp_port: p.port,
                queues: (0..p.workers)
                    .map(|_| Queue {
                        frames: std::cell::UnsafeCell::new(vec![0u8; FRAME_CAP * BURST]),
                        lens: std::cell::UnsafeCell::new([0; BURST]),
                    })
                    .collect(),
                counters: Counters::default(),
                closed: AtomicBool::new(false),
            })
        }

        /// The port's Ethernet address.
        pub fn mac(&self) -> [u8; 6] {
            self.mac
        }

        /// Stop receiving: the runtime drains what it has and `shutdown` returns.
        pub fn close(&self) {
            self.closed.store(true, Ordering::Release);
        }

        /// Its counters so far.
        pub fn counters(&self) -> DpdkSnapshot {
            let c = &self.counters;
            DpdkSnapshot {
                frames: c.frames.load(Ordering::Relaxed),
                not_for_us: c.not_for_us.load(Ordering::Relaxed),
                malformed: c.malformed.load(Ordering::Relaxed),
                replies: c.replies.load(Ordering::Relaxed),
                reply_errors: c.reply_errors.load(Ordering::Relaxed),
            }
        }
    }

    impl Drop for DpdkTransport {
        fn drop(&mut self) {
            // SAFETY: no worker uses the port any more (the runtime was shut down first).
            unsafe { syn_dpdk_port_stop(self.port) };
        }
    }

    impl Transport for DpdkTransport {
        fn poll(&self, worker: usize, out: &mut Vec<Request>, max: usize) {
            if self.closed.load(Ordering::Acquire) {
                return;
            }
            let q = &self.queues[worker];
            // SAFETY: one poller of queue `worker` at a time (see `Queue` and `Transport::poll`).
            let (frames, lens) = unsafe { (&mut *q.frames.get(), &mut *q.lens.get()) };
            // SAFETY: `frames` holds BURST frames of FRAME_CAP bytes, `lens` BURST lengths.
            let n = unsafe {
                syn_dpdk_rx(
                    self.port,
                    worker as u16,
                    frames.as_mut_ptr(),
                    lens.as_mut_ptr(),
                    max.min(BURST) as u16,
                    FRAME_CAP as u16,
                )
            } as usize;
            let c = &self.counters;
            c.frames.fetch_add(n as u64, Ordering::Relaxed);
            for i in 0..n {
                let f = &frames[i * FRAME_CAP..i * FRAME_CAP + usize::from(lens[i])];
                match frame::parse(f, self.ip, self.udp_port) {
                    Err(_) => {
                        c.not_for_us.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok((payload, peer)) => match decode_request(payload, DPDK_MAX_REQUEST_BODY) {
                        Ok(mut req) => {
                            req.arrival_ns = clock::now_ns();
                            req.origin = pack(&peer);
                            out.push(req);
                        }
                        Err(e) => {
                            c.malformed.fetch_add(1, Ordering::Relaxed);
                            if let (WireError::BodyTooLarge { .. }, Some((id, kind))) = (e, salvage_request_id(payload))
                            {
                                let status = status::TOO_LARGE;
                                self.reply(worker, Reply { id, kind, status, origin: pack(&peer), ..Reply::default() });
                            }
                        }
                    },
                }
            }
        }

        fn backlog(&self, _worker: usize) -> usize {
            // Frames still in the NIC queue are invisible without polling it, which only the
            // worker may do; the runtime's local ring (what the burst left) is counted by it.
            0
        }

        fn reports_backlog(&self) -> bool {
            // No RX interrupts yet: a parked worker would never hear of its frames.
            false
        }

        fn reply(&self, worker: usize, reply: Reply) {
            let Some(peer) = self.peer_of(reply.origin) else {
                self.counters.reply_errors.fetch_add(1, Ordering::Relaxed);
                return;
            };
            // The message is assembled on the stack: no allocation per reply.
            let mut message = [0u8; REPLY_LEN + DPDK_MAX_REPLY_BODY];
            let message_len = if reply.body.len() > DPDK_MAX_REPLY_BODY {
                self.counters.reply_errors.fetch_add(1, Ordering::Relaxed);
                let refused = Reply { status: status::TOO_LARGE, body: Default::default(), ..reply };
                message[..REPLY_LEN].copy_from_slice(&encode_reply_header(&refused));
                REPLY_LEN
            } else {
                message[..REPLY_LEN].copy_from_slice(&encode_reply_header(&reply));
                message[REPLY_LEN..REPLY_LEN + reply.body.len()].copy_from_slice(&reply.body);
                REPLY_LEN + reply.body.len()
            };
            let mut buf = [0u8; frame::HEADERS_LEN + REPLY_LEN + DPDK_MAX_REPLY_BODY];
            let Some(len) = frame::build(&mut buf, self.mac, self.ip, self.udp_port, &peer, &message[..message_len])
            else {
                self.counters.reply_errors.fetch_add(1, Ordering::Relaxed);
                return;
            };
            // SAFETY: `buf[..len]` is an initialised frame; queue `worker` is this worker's.
            let r = unsafe { syn_dpdk_tx(self.port, worker as u16, buf.as_ptr(), len as u16) };
            let c = if r == 0 { &self.counters.replies } else { &self.counters.reply_errors };
            c.fetch_add(1, Ordering::Relaxed);
        }

        fn finished(&self) -> bool {
            self.closed.load(Ordering::Acquire)
        }
    }

    /// Origin of a DPDK request: the peer's IPv4 address and port, plus an index into the peer
    /// MAC table (the MAC does not fit in the 64-bit origin).
    fn pack(peer: &Peer) -> u64 {
        let slot = mac_slot(peer.mac);
        (u64::from(u32::from(peer.ip)) << 32) | (u64::from(peer.port) << 16) | u64::from(slot)
    }

    const MAC_SLOTS: usize = 1024;
    static MACS: [AtomicU64; MAC_SLOTS] = [const { AtomicU64::new(0) }; MAC_SLOTS];

    fn mac_u64(mac: [u8; 6]) -> u64 {
        let mut b = [0u8; 8];
        b[..6].copy_from_slice(&mac);
        u64::from_le_bytes(b) | (1 << 63)
    }

    /// The peer MAC table slot of `mac` (open addressing; a full table reuses a slot, which
    /// only misdirects replies once more than 1024 distinct clients talk to one server).
    fn mac_slot(mac: [u8; 6]) -> u16 {
        let v = mac_u64(mac);
        let h = (v.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 54) as usize;
        for i in 0..MAC_SLOTS {
            let s = (h + i) % MAC_SLOTS;
            match MACS[s].compare_exchange(0, v, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return s as u16,
                Err(cur) if cur == v => return s as u16,
                Err(_) => {}
            }
        }
        MACS[h].store(v, Ordering::Release);
        h as u16
    }

    impl DpdkTransport {
        fn peer_of(&self, origin: u64) -> Option<Peer> {
            let v = MACS.get((origin & 0xffff) as usize)?.load(Ordering::Acquire);
            if v == 0 {
                return None;
            }
            let b = (v & !(1 << 63)).to_le_bytes();
            let mut mac = [0u8; 6];
            mac.copy_from_slice(&b[..6]);
            Some(Peer { mac, ip: Ipv4Addr::from((origin >> 32) as u32), port: (origin >> 16) as u16 })
        }
    }
}

#[cfg(all(test, not(feature = "dpdk")))]
mod tests {
    use super::*;

    /// A build without DPDK says so with its own error, which names how to get one.
    #[test]
    fn a_build_without_dpdk_refuses_with_a_typed_error() {
        let p = DpdkParams {
            eal_args: vec![],
            device: "net_null0".into(),
            ip: Ipv4Addr::LOCALHOST,
            port: 7000,
            workers: 1,
        };
        let e = DpdkTransport::open(&p).err().expect("no DPDK in this build");
        assert_eq!(e, DpdkError::NotBuilt);
        assert!(e.to_string().contains("--features dpdk"), "{e}");
    }
}
