// SPDX-License-Identifier: GPL-2.0 OR MIT
//! Linux's generic ioctl number encoding (include/uapi/asm-generic/ioctl.h, which x86 uses), as
//! `const fn`s. Shared verbatim by user space and the kernel modules (`#[path]`-included), so both
//! compute every ioctl number from the same source; the modules additionally assert at compile
//! time that these agree with the kernel's own `_IOR`/`_IOW`/`_IOWR`.

/// Bits of the command number.
pub const IOC_NRBITS: u32 = 8;
/// Bits of the type (the driver's magic).
pub const IOC_TYPEBITS: u32 = 8;
/// Bits of the argument's size.
pub const IOC_SIZEBITS: u32 = 14;
/// Where the command number starts.
pub const IOC_NRSHIFT: u32 = 0;
/// Where the type starts.
pub const IOC_TYPESHIFT: u32 = IOC_NRSHIFT + IOC_NRBITS;
/// Where the size starts.
pub const IOC_SIZESHIFT: u32 = IOC_TYPESHIFT + IOC_TYPEBITS;
/// Where the direction starts.
pub const IOC_DIRSHIFT: u32 = IOC_SIZESHIFT + IOC_SIZEBITS;

/// Direction: no argument.
pub const IOC_NONE: u32 = 0;
/// Direction: user space writes the argument (`_IOW`).
pub const IOC_WRITE: u32 = 1;
/// Direction: user space reads the argument (`_IOR`).
pub const IOC_READ: u32 = 2;

/// Encodes an ioctl number; `size` must fit in 14 bits (checked at compile time for constants).
pub const fn ioc(dir: u32, ty: u8, nr: u8, size: usize) -> u32 {
    assert!(size < (1 << IOC_SIZEBITS), "ioctl argument too large");
    (dir << IOC_DIRSHIFT)
        | ((size as u32) << IOC_SIZESHIFT)
        | ((ty as u32) << IOC_TYPESHIFT)
        | ((nr as u32) << IOC_NRSHIFT)
}

/// `_IO(ty, nr)`: an ioctl without an argument.
pub const fn io(ty: u8, nr: u8) -> u32 {
    ioc(IOC_NONE, ty, nr, 0)
}

/// The kernel writes a `T` to user space.
pub const fn ior<T>(ty: u8, nr: u8) -> u32 {
    ioc(IOC_READ, ty, nr, core::mem::size_of::<T>())
}

/// User space passes a `T` to the kernel.
pub const fn iow<T>(ty: u8, nr: u8) -> u32 {
    ioc(IOC_WRITE, ty, nr, core::mem::size_of::<T>())
}

/// Both directions.
pub const fn iowr<T>(ty: u8, nr: u8) -> u32 {
    ioc(IOC_READ | IOC_WRITE, ty, nr, core::mem::size_of::<T>())
}

/// The argument size encoded in `cmd`.
pub const fn ioc_size(cmd: u32) -> usize {
    ((cmd >> IOC_SIZESHIFT) & ((1 << IOC_SIZEBITS) - 1)) as usize
}
