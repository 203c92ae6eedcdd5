/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * The ABI of kmod_uintr (/dev/synergy_uintr) for C programs. The Rust definitions in
 * uapi/src/uintr.rs are the source; this header follows them field for field, and
 * uapi/tests/c_header.rs compiles it and fails on any difference. See uapi/src/uintr.rs
 * for the protocol and the errors of each ioctl.
 */
#ifndef _SYNERGY_UINTR_H
#define _SYNERGY_UINTR_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define SYNERGY_UINTR_DEVICE_PATH "/dev/synergy_uintr"
#define SYNERGY_UINTR_IOC_MAGIC 0xB6
#define SYNERGY_UINTR_ABI_VERSION 3
/* synergy_uintr_receiver.flags: stack_adjust is an RSP to load, not an amount to subtract. */
#define SYNERGY_UINTR_RECEIVER_STACK_LOAD 1
/* The largest subtractive stack adjustment accepted. */
#define SYNERGY_UINTR_MAX_STACK_SKIP 4096
/* User vectors 0..63; UITT entries per process. */
#define SYNERGY_UINTR_USER_VECTORS 64
#define SYNERGY_UINTR_UITT_ENTRIES 256

struct synergy_uintr_version {
	__u32 abi_version;
	__u32 supported;	/* 1 if the CPU has UINTR */
	__u32 cpus_ready;	/* CPUs prepared (CR4.UINTR) */
	__u32 reserved;
};

struct synergy_uintr_receiver {
	__u64 handler;		/* user address of the handler */
	__u64 stack_adjust;
	__u32 flags;		/* SYNERGY_UINTR_RECEIVER_STACK_LOAD or 0 */
	__u32 receiver_id;	/* 0 in; out: the receiver's id */
};

struct synergy_uintr_sender {
	__u32 receiver_id;	/* a receiver of the caller's own process */
	__u32 vector;		/* 0..63 */
	__u32 uitt_index;	/* out: the index to pass to senduipi */
	__u32 flags;		/* must be 0 */
};

#define SYNERGY_UINTR_IOC_VERSION _IOR(SYNERGY_UINTR_IOC_MAGIC, 0x00, struct synergy_uintr_version)
#define SYNERGY_UINTR_IOC_REGISTER_RECEIVER _IOWR(SYNERGY_UINTR_IOC_MAGIC, 0x01, struct synergy_uintr_receiver)
#define SYNERGY_UINTR_IOC_UNREGISTER_RECEIVER _IO(SYNERGY_UINTR_IOC_MAGIC, 0x02)
#define SYNERGY_UINTR_IOC_REGISTER_SENDER _IOWR(SYNERGY_UINTR_IOC_MAGIC, 0x03, struct synergy_uintr_sender)
#define SYNERGY_UINTR_IOC_UNREGISTER_SENDER _IO(SYNERGY_UINTR_IOC_MAGIC, 0x04)

#endif /* _SYNERGY_UINTR_H */
