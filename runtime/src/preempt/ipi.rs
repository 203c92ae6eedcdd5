//! `--preempt=ipi`: the timer core asks the kmod_ipi kernel module to interrupt a worker's CPU.
//! Each worker registers itself (pinned) as its CPU's receiver with `ipi_stub` as handler and its
//! `interrupted_rip` slot; the module redirects the interrupted thread there, and the stub decides
//! like the signal handler does before entering the common preemption entry.

use super::{check_module_abi, entry, ioctl, open_module_device, Preempter, Target};
use crate::local;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use synergy_uapi::ipi;

/// `--preempt=ipi`: interrupts through kmod_ipi (`/dev/synergy_ipi`), one direct IPI per preemption.
pub struct IpiPreempter {
    dev: File,
}

impl IpiPreempter {
    /// Opens `/dev/synergy_ipi` and checks the module speaks our ABI.
    pub fn open() -> io::Result<IpiPreempter> {
        entry::init()?;
        let dev = open_module_device("ipi", "kmod_ipi", ipi::DEVICE_PATH)?;
        let mut v = ipi::IpiVersion::default();
        ioctl(dev.as_raw_fd(), ipi::IOC_VERSION, &mut v as *mut _ as usize)?;
        check_module_abi("kmod_ipi", v.abi_version, ipi::ABI_VERSION)?;
        Ok(IpiPreempter { dev })
    }
}

impl Preempter for IpiPreempter {
    fn name(&self) -> &'static str {
        "ipi"
    }

    fn register_worker(&self, cpu: Option<usize>) -> io::Result<()> {
        if cpu.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "--preempt=ipi needs pinned workers (drop --pin false)",
            ));
        }
        let l = local::current();
        let mut req = ipi::IpiRegister {
            handler: entry::ipi_stub_address(),
            rip_slot: &l.interrupted_rip as *const _ as u64,
            cpu: 0,
            flags: 0,
        };
        ioctl(self.dev.as_raw_fd(), ipi::IOC_REGISTER, &mut req as *mut _ as usize)
    }

    fn unregister_worker(&self) {
        let _ = ioctl(self.dev.as_raw_fd(), ipi::IOC_UNREGISTER, 0);
    }

    fn preempt(&self, target: Target) -> io::Result<()> {
        let req = ipi::IpiSend { target: target.cpu as u32, flags: 0 };
        ioctl(self.dev.as_raw_fd(), ipi::IOC_SEND, &req as *const _ as usize)
    }
}
