//! Programmable ingress steering for the kernel UDP transport (issue 19; Syrup's socket-selection
//! layer): which worker's socket a datagram lands in — or whether it is dropped — decided in the
//! kernel, per datagram, by a program attached to the transport's SO_REUSEPORT group. Sockets
//! are indexed in the order they were bound (worker 0 first).
//!
//! Stateless policies are classic BPF (`cbpf`):
//! - `hash`: no program, the kernel's 4-tuple hash (RSS-like; the default);
//! - `random`: a uniformly random socket per datagram (Syrup's round-robin/random steering: one
//!   busy flow no longer lands on one worker);
//! - `sita`: size-interval task assignment by request kind (Syrup's SITA): requests of the long
//!   kinds go to worker 0, all others randomly over workers 1..n, so a short request never queues
//!   behind a long one in a socket buffer. With one worker there is nothing to separate: hash.
//!
//! Stateful ones are eBPF (`ebpf`, root only):
//! - `scan-avoid`: Syrup's SCAN-avoid: requests of the long kinds go to a random socket, all
//!   others to a socket whose worker runs no long request now (the runtime says which through
//!   `Transport::long_request`, a store into memory the program reads);
//! - `tokens`: a token bucket per tenant (the request's `flow`): `rate` datagrams per second
//!   after a burst of `burst`; the excess is dropped in the kernel, before it costs a socket
//!   buffer slot or a worker's time, and counted.

pub mod cbpf;
pub mod ebpf;

use std::io;
use std::os::fd::OwnedFd;

/// How datagrams are spread over the workers' sockets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Steering {
    #[default]
    /// The kernel's default: a hash of the source address and port (SO_REUSEPORT).
    Hash,
    /// A random socket per datagram (eBPF).
    Random,
    /// Requests whose kind is one of these go to worker 0; the rest are spread over the others.
    Sita {
        /// The request kinds that are long.
        long_kinds: Vec<u32>,
    },
    /// Requests whose kind is not one of these avoid workers running a long request.
    ScanAvoid {
        /// The request kinds that are long.
        long_kinds: Vec<u32>,
    },
    /// Each flow may send `burst` datagrams at once and `rate_per_s` per second after that.
    TenantTokens {
        /// Datagrams per second each flow may send after its burst.
        rate_per_s: u32,
        /// Datagrams a flow may send at once.
        burst: u32,
    },
}

/// Token-bucket parameters of `--steer tokens`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucket {
    /// Datagrams per second each flow may send after its burst.
    pub rate_per_s: u32,
    /// Datagrams a flow may send at once.
    pub burst: u32,
}

/// Why a steering policy could not be made from its name and options.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SteeringError {
    #[error("--steer {0} needs at least one long request kind")]
    /// SITA or SCAN-avoid without a long kind.
    NoLongKinds(&'static str),
    #[error("--steer {0} takes at most 64 long request kinds")]
    /// More long kinds than the program can test.
    TooManyLongKinds(&'static str),
    #[error("--steer tokens needs --tenant-rate (datagrams per second per flow)")]
    /// `tokens` without its rate.
    NoTenantRate,
    #[error("--tenant-rate must be at least 1 per second")]
    /// A token rate of 0.
    ZeroTenantRate,
    #[error("--tenant-burst must be at least 1")]
    /// A token burst of 0.
    ZeroTenantBurst,
    #[error("unknown steering {0:?}: expected hash, random, sita, scan-avoid or tokens")]
    /// No policy of that name.
    Unknown(String),
}

impl Steering {
    /// The policy spelled `name` (`hash`, `random`, `sita`, `scan-avoid`, `tokens`); `sita` and
    /// `scan-avoid` separate `long_kinds`; `tokens` needs `bucket`.
    pub fn named(name: &str, long_kinds: &[u32], bucket: Option<TokenBucket>) -> Result<Steering, SteeringError> {
        let kinds = |policy: &'static str| {
            if long_kinds.is_empty() {
                Err(SteeringError::NoLongKinds(policy))
            } else if long_kinds.len() > 64 {
                Err(SteeringError::TooManyLongKinds(policy))
            } else {
                Ok(long_kinds.to_vec())
            }
        };
        match name {
            "hash" => Ok(Steering::Hash),
            "random" => Ok(Steering::Random),
            "sita" => Ok(Steering::Sita { long_kinds: kinds("sita")? }),
            "scan-avoid" => Ok(Steering::ScanAvoid { long_kinds: kinds("scan-avoid")? }),
            "tokens" => match bucket {
                None => Err(SteeringError::NoTenantRate),
                Some(TokenBucket { rate_per_s: 0, .. }) => Err(SteeringError::ZeroTenantRate),
                Some(TokenBucket { burst: 0, .. }) => Err(SteeringError::ZeroTenantBurst),
                Some(b) => Ok(Steering::TenantTokens { rate_per_s: b.rate_per_s, burst: b.burst }),
            },
            other => Err(SteeringError::Unknown(other.into())),
        }
    }

    /// The name `--steer` uses.
    pub fn name(&self) -> &'static str {
        match self {
            Steering::Hash => "hash",
            Steering::Random => "random",
            Steering::Sita { .. } => "sita",
            Steering::ScanAvoid { .. } => "scan-avoid",
            Steering::TenantTokens { .. } => "tokens",
        }
    }

    /// The eBPF program this policy needs for a group of `sockets`, if any.
    fn ebpf_program(&self, sockets: usize) -> io::Result<Option<ebpf::Program>> {
        match self {
            Steering::ScanAvoid { .. } if sockets > ebpf::programs::MAX_SCAN_AVOID_SOCKETS => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("--steer scan-avoid tracks at most {} workers", ebpf::programs::MAX_SCAN_AVOID_SOCKETS),
            )),
            Steering::ScanAvoid { .. } if sockets < 2 => Ok(None),
            Steering::ScanAvoid { long_kinds } => Ok(Some(ebpf::Program::ScanAvoid { long_kinds: long_kinds.clone() })),
            Steering::TenantTokens { rate_per_s, burst } => {
                // The bucket the kernel keeps is policy's GCRA; its interval is at most 1 s.
                let g = synergy::policy::tokens::Gcra::per_second(u64::from(*rate_per_s), u64::from(*burst));
                Ok(Some(ebpf::Program::TenantTokens { interval_ns: g.interval_ns as u32, burst: g.burst as u32 }))
            }
            _ => Ok(None),
        }
    }

    /// Attaches the policy's program to the group of `sockets` (all of it, worker 0 first);
    /// the eBPF ones come back as a handle to their shared state.
    pub fn attach(&self, sockets: &[OwnedFd]) -> io::Result<Option<ebpf::Attached>> {
        if let Some(program) = cbpf::program(self, sockets.len()) {
            cbpf::attach(self.name(), program, &sockets[0])?;
            return Ok(None);
        }
        match self.ebpf_program(sockets.len())? {
            Some(p) => ebpf::Attached::load(&p, sockets).map(Some),
            None => Ok(None),
        }
    }
}

/// Sets SOL_SOCKET option `option` (spelled `option_name`) of `fd` to `value`; errors name the
/// option and the policy.
///
/// # Safety
/// `T` must be the type the kernel expects for `option`, and every pointer inside `value` must
/// be valid for what the kernel reads during the call.
unsafe fn set_socket_option<T>(
    fd: &OwnedFd,
    option: libc::c_int,
    value: &T,
    option_name: &str,
    policy: &str,
) -> io::Result<()> {
    // SAFETY: the caller's contract; `value` is live and its size is passed.
    let r = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(fd),
            libc::SOL_SOCKET,
            option,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("setsockopt({option_name}, {policy}): {e}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_bad_ones_say_why() {
        let b = Some(TokenBucket { rate_per_s: 1000, burst: 10 });
        assert_eq!(Steering::named("random", &[], None).unwrap(), Steering::Random);
        assert_eq!(Steering::named("sita", &[1], None).unwrap(), Steering::Sita { long_kinds: vec![1] });
        assert_eq!(Steering::named("scan-avoid", &[2], None).unwrap(), Steering::ScanAvoid { long_kinds: vec![2] });
        assert_eq!(Steering::named("tokens", &[], b).unwrap(), Steering::TenantTokens { rate_per_s: 1000, burst: 10 });
        assert!(Steering::named("sita", &[], None).unwrap_err().to_string().contains("long request kind"));
        assert!(Steering::named("scan-avoid", &[], None).unwrap_err().to_string().contains("long request kind"));
        assert!(Steering::named("tokens", &[], None).unwrap_err().to_string().contains("--tenant-rate"));
        let zero = Some(TokenBucket { rate_per_s: 0, burst: 1 });
        assert!(Steering::named("tokens", &[], zero).unwrap_err().to_string().contains("at least 1 per second"));
        assert!(Steering::named("rr", &[], None)
            .unwrap_err()
            .to_string()
            .contains("hash, random, sita, scan-avoid or tokens"));
    }

    #[test]
    fn token_interval_is_the_rate_inverse() {
        let p = Steering::TenantTokens { rate_per_s: 1000, burst: 5 }.ebpf_program(4).unwrap();
        assert_eq!(p, Some(ebpf::Program::TenantTokens { interval_ns: 1_000_000, burst: 5 }));
        let many = Steering::ScanAvoid { long_kinds: vec![1] }.ebpf_program(65);
        assert!(many.unwrap_err().to_string().contains("at most 64"));
        assert_eq!(Steering::ScanAvoid { long_kinds: vec![1] }.ebpf_program(1).unwrap(), None);
    }
}
