//! `--preempt=uintr`: Intel user interrupts, set up by the kmod_uintr kernel module.
//!
//! Each worker registers itself as a receiver with `uintr_stub` as its handler and a 128-byte
//! stack adjustment (the red zone), then sets UIF (`stui`). The thread that preempts (the timer
//! core) registers as a sender of each worker the first time it interrupts it, getting a UITT
//! index, and from then on a preemption is one `senduipi` instruction: no system call.

use super::{check_module_abi, entry, ioctl, open_module_device, Preempter, Target};
use crate::cpu::gettid;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Mutex;
use synergy_uapi::uintr::{self, clui, senduipi, stui};

/// User vector of every preemption (any of 0..63 would do: the handler ignores it).
const PREEMPT_VECTOR: u32 = 0;

/// `--preempt=uintr`: Intel user interrupts set up by kmod_uintr, sent with `senduipi`.
pub struct UintrPreempter {
    dev: File,
    /// (worker tid, receiver id), added by `register_worker`.
    receivers: Mutex<Vec<(i32, u32)>>,
    /// ((sending thread tid, worker tid), UITT index): a UITT belongs to the thread that
    /// registered it, so each sending thread has its own indices.
    indices: Mutex<Vec<((i32, i32), u64)>>,
}

impl UintrPreempter {
    /// Opens `/dev/synergy_uintr`, checks the module speaks our ABI and that the CPU has UINTR.
    pub fn open() -> io::Result<UintrPreempter> {
        if !uintr::cpu_has_uintr() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "--preempt=uintr needs Intel user interrupts (Sapphire Rapids or newer) and the kmod_uintr kernel \
                 module: this CPU has no UINTR (CPUID.7.0:EDX[5] = 0); use --preempt=signal or --preempt=ipi",
            ));
        }
        entry::init()?;
        let dev = open_module_device("uintr", "kmod_uintr", uintr::DEVICE_PATH)?;
        let mut v = uintr::UintrVersion::default();
        ioctl(dev.as_raw_fd(), uintr::IOC_VERSION, &mut v as *mut _ as usize)?;
        check_module_abi("kmod_uintr", v.abi_version, uintr::ABI_VERSION)?;
        if v.supported == 0 {
            return Err(io::Error::new(io::ErrorKind::Unsupported, "kmod_uintr reports no UINTR support on this CPU"));
        }
        Ok(UintrPreempter { dev, receivers: Mutex::new(Vec::new()), indices: Mutex::new(Vec::new()) })
    }

    fn index_for(&self, worker_tid: i32) -> io::Result<u64> {
        let key = (gettid(), worker_tid);
        let mut indices = self.indices.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&(_, i)) = indices.iter().find(|(k, _)| *k == key) {
            return Ok(i);
        }
        let receivers = self.receivers.lock().unwrap_or_else(|e| e.into_inner());
        let Some(&(_, receiver_id)) = receivers.iter().find(|(t, _)| *t == worker_tid) else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("worker thread {worker_tid} is not a UINTR receiver"),
            ));
        };
        let mut s = uintr::UintrSender { receiver_id, vector: PREEMPT_VECTOR, uitt_index: 0, flags: 0 };
        ioctl(self.dev.as_raw_fd(), uintr::IOC_REGISTER_SENDER, &mut s as *mut _ as usize)?;
        indices.push((key, s.uitt_index as u64));
        Ok(s.uitt_index as u64)
    }
}

impl Preempter for UintrPreempter {
    fn name(&self) -> &'static str {
        "uintr"
    }

    /// Registers the calling worker (pinned or not: the module follows migrations) and sets UIF.
    fn register_worker(&self, _cpu: Option<usize>) -> io::Result<()> {
        let mut r =
            uintr::UintrReceiver { handler: entry::uintr_stub_address(), stack_adjust: 128, flags: 0, receiver_id: 0 };
        ioctl(self.dev.as_raw_fd(), uintr::IOC_REGISTER_RECEIVER, &mut r as *mut _ as usize)?;
        self.receivers.lock().unwrap_or_else(|e| e.into_inner()).push((gettid(), r.receiver_id));
        stui();
        Ok(())
    }

    fn unregister_worker(&self) {
        clui();
        let _ = ioctl(self.dev.as_raw_fd(), uintr::IOC_UNREGISTER_RECEIVER, 0);
        let me = gettid();
        self.receivers.lock().unwrap_or_else(|e| e.into_inner()).retain(|(t, _)| *t != me);
    }

    fn preempt(&self, target: Target) -> io::Result<()> {
        senduipi(self.index_for(target.tid)?);
        Ok(())
    }
}
