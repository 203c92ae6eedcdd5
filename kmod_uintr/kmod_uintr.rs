// SPDX-License-Identifier: GPL-2.0

//! kmod_uintr: Intel user interrupts (UINTR) for synergy's `--preempt=uintr`.
//!
//! This version is the module's validated front end: it detects UINTR (CPUID.(7,0):EDX[5]),
//! reports it through `IOC_VERSION`, and checks every argument of every ioctl exactly as the ABI
//! (`uapi/src/uintr.rs`, compiled here from the same file) specifies. A registration that passes
//! the checks is refused with EOPNOTSUPP: on CPUs without UINTR because the hardware is missing,
//! and on CPUs with it because the hardware setup (UPID/UITT allocation, CR4.UINTR, the
//! IA32_UINTR_* MSRs, their save/restore across context switches) is not part of this version;
//! kmod_uintr/README.md says what it needs and why it is not done yet. Nothing here touches an
//! MSR or CR4, so loading it is safe on any x86-64 CPU.

use core::sync::atomic::{AtomicBool, Ordering};
use kernel::{
    fs::File,
    miscdevice::{MiscDevice, MiscDeviceOptions, MiscDeviceRegistration},
    prelude::*,
    uaccess::{UserPtr, UserSlice},
};

#[path = "../uapi/src/ioctl.rs"]
#[allow(dead_code, unreachable_pub)]
mod ioctl;
#[path = "../uapi/src/uintr.rs"]
#[allow(dead_code, unreachable_pub)]
mod abi;

const _: () = assert!(abi::IOC_VERSION == kernel::ioctl::_IOR::<abi::UintrVersion>(abi::IOC_MAGIC as u32, 0x00));
const _: () = assert!(abi::IOC_REGISTER_RECEIVER == kernel::ioctl::_IOWR::<abi::UintrReceiver>(abi::IOC_MAGIC as u32, 0x01));
const _: () = assert!(abi::IOC_UNREGISTER_RECEIVER == kernel::ioctl::_IO(abi::IOC_MAGIC as u32, 0x02));
const _: () = assert!(abi::IOC_REGISTER_SENDER == kernel::ioctl::_IOWR::<abi::UintrSender>(abi::IOC_MAGIC as u32, 0x03));
const _: () = assert!(abi::IOC_UNREGISTER_SENDER == kernel::ioctl::_IO(abi::IOC_MAGIC as u32, 0x04));

// SAFETY: `repr(C)` structs of u32/u64 fields without padding: all bytes initialised, every bit
// pattern valid.
unsafe impl kernel::transmute::AsBytes for abi::UintrVersion {}
// SAFETY: see above.
unsafe impl kernel::transmute::FromBytes for abi::UintrReceiver {}
// SAFETY: see above.
unsafe impl kernel::transmute::FromBytes for abi::UintrSender {}

module! {
    type: SynergyUintr,
    name: "kmod_uintr",
    authors: ["synergy developers"],
    description: "synergy: Intel user interrupts (UINTR) set-up front end",
    license: "GPL",
}

/// Highest user-space address with 4-level paging (TASK_SIZE_MAX - 1).
const USER_ADDR_MAX: u64 = 0x0000_7fff_ffff_efff;

static SUPPORTED: AtomicBool = AtomicBool::new(false);

#[pin_data]
struct SynergyUintr {
    #[pin]
    _miscdev: MiscDeviceRegistration<UintrFile>,
}

impl kernel::InPlaceModule for SynergyUintr {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        let supported = abi::cpu_has_uintr();
        SUPPORTED.store(supported, Ordering::Relaxed);
        if supported {
            pr_info!("loaded (ABI {}); this CPU has UINTR, but this version does not set it up: registrations get EOPNOTSUPP\n", abi::ABI_VERSION);
        } else {
            pr_info!("loaded (ABI {}); this CPU has no UINTR (CPUID.7.0:EDX[5] = 0): registrations get EOPNOTSUPP\n", abi::ABI_VERSION);
        }
        try_pin_init!(Self {
            _miscdev <- MiscDeviceRegistration::register(MiscDeviceOptions { name: c"synergy_uintr" }),
        })
    }
}

struct UintrFile;

fn user_code_addr(a: u64) -> bool {
    a != 0 && a <= USER_ADDR_MAX
}

fn check_receiver(r: &abi::UintrReceiver) -> Result {
    if r.flags & !abi::RECEIVER_STACK_LOAD != 0 || r.receiver_id != 0 || !user_code_addr(r.handler) {
        return Err(EINVAL);
    }
    if r.flags & abi::RECEIVER_STACK_LOAD != 0 {
        // An RSP to load: a 16-byte aligned user address.
        if !user_code_addr(r.stack_adjust) || r.stack_adjust % 16 != 0 {
            return Err(EINVAL);
        }
    } else if r.stack_adjust % 8 != 0 || r.stack_adjust > abi::MAX_STACK_SKIP {
        return Err(EINVAL);
    }
    abi::stack_adjust_msr(r.stack_adjust, r.flags & abi::RECEIVER_STACK_LOAD != 0).map_err(|_| EINVAL)?;
    abi::handler_msr(r.handler).map_err(|_| EINVAL)?;
    Ok(())
}

fn check_sender(s: &abi::UintrSender) -> Result {
    if s.flags != 0 || s.uitt_index != 0 || s.vector >= abi::USER_VECTORS {
        return Err(EINVAL);
    }
    Ok(())
}

#[vtable]
impl MiscDevice for UintrFile {
    type Ptr = KBox<Self>;

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<KBox<Self>> {
        Ok(KBox::new(UintrFile, GFP_KERNEL)?)
    }

    fn ioctl(_me: &UintrFile, _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        let size = kernel::ioctl::_IOC_SIZE(cmd);
        let user = || UserSlice::new(UserPtr::from_addr(arg), size);
        let supported = SUPPORTED.load(Ordering::Relaxed);
        match cmd {
            abi::IOC_VERSION => {
                user().writer().write(&abi::UintrVersion { abi_version: abi::ABI_VERSION, supported: supported as u32 })?;
                Ok(0)
            }
            abi::IOC_REGISTER_RECEIVER => {
                let r: abi::UintrReceiver = user().reader().read()?;
                check_receiver(&r)?;
                Err(EOPNOTSUPP)
            }
            abi::IOC_REGISTER_SENDER => {
                let s: abi::UintrSender = user().reader().read()?;
                check_sender(&s)?;
                // No receiver can exist in this version, so a valid request names none.
                if supported { Err(ENOENT) } else { Err(EOPNOTSUPP) }
            }
            abi::IOC_UNREGISTER_RECEIVER | abi::IOC_UNREGISTER_SENDER => Err(ENOENT),
            _ => Err(ENOTTY),
        }
    }
}
