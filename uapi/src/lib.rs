//! The ABI shared by synergy's kernel modules and user space: ioctl numbers and `#[repr(C)]`
//! structures. `no_std` and dependency-free: the kernel modules compile these very files
//! (`#[path]` includes), so there is exactly one definition of every number and layout.
#![no_std]
#![deny(missing_docs)]

pub mod ioctl;
pub mod ipi;
pub mod uintr;

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, size_of};

    #[test]
    fn encoding_matches_linux_asm_generic() {
        // _IO('|', 0x80) and _IOR('|', 0x81, int) as computed by the kernel's C macros.
        assert_eq!(ioctl::io(b'|', 0x80), 0x0000_7c80);
        assert_eq!(ioctl::ior::<i32>(b'|', 0x81), 0x8004_7c81);
        assert_eq!(ioctl::iow::<i32>(b'|', 0x82), 0x4004_7c82);
        assert_eq!(ioctl::iowr::<u64>(b'T', 1), 0xC008_5401);
        assert_eq!(ioctl::ioc_size(0x8004_7c81), 4);
    }

    #[test]
    fn ipi_abi_is_pinned() {
        assert_eq!(
            (size_of::<ipi::IpiVersion>(), align_of::<ipi::IpiVersion>()),
            (8, 4)
        );
        assert_eq!(
            (
                size_of::<ipi::IpiRegister>(),
                align_of::<ipi::IpiRegister>()
            ),
            (24, 8)
        );
        assert_eq!(
            (size_of::<ipi::IpiCpuApic>(), align_of::<ipi::IpiCpuApic>()),
            (8, 4)
        );
        assert_eq!(
            (size_of::<ipi::IpiSend>(), align_of::<ipi::IpiSend>()),
            (8, 4)
        );
        assert_eq!(
            (size_of::<ipi::IpiStats>(), align_of::<ipi::IpiStats>()),
            (40, 8)
        );
        assert_eq!(ipi::IOC_VERSION, 0x8008_B500);
        assert_eq!(ipi::IOC_REGISTER, 0xC018_B501);
        assert_eq!(ipi::IOC_UNREGISTER, 0x0000_B502);
        assert_eq!(ipi::IOC_CPU_APIC_ID, 0xC008_B503);
        assert_eq!(ipi::IOC_SEND, 0x4008_B504);
        assert_eq!(ipi::IOC_STATS, 0x8028_B505);
        assert_eq!(ipi::ABI_VERSION, 2);
    }
}
