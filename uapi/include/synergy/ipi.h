/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * The ABI of kmod_ipi (/dev/synergy_ipi) for C programs. The Rust definitions in
 * uapi/src/ipi.rs are the source; this header follows them field for field, and
 * uapi/tests/c_header.rs compiles it and fails on any difference (sizes, offsets,
 * ioctl numbers, constants). See uapi/src/ipi.rs for the protocol.
 */
#ifndef _SYNERGY_IPI_H
#define _SYNERGY_IPI_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define SYNERGY_IPI_DEVICE_PATH "/dev/synergy_ipi"
#define SYNERGY_IPI_IOC_MAGIC 0xB5
#define SYNERGY_IPI_ABI_VERSION 2
#define SYNERGY_IPI_MAX_CPUS 64
/* synergy_ipi_send.flags: target is an APIC ID, not a CPU number. */
#define SYNERGY_IPI_SEND_BY_APIC_ID 1

struct synergy_ipi_version {
	__u32 abi_version;
	__u32 flags;		/* reserved, 0 */
};

struct synergy_ipi_register {
	__u64 handler;		/* user address the interrupted thread resumes at */
	__u64 rip_slot;		/* user address of an 8-byte aligned u64: the interrupted rip */
	__u32 cpu;		/* out: the CPU registered on */
	__u32 flags;		/* must be 0 */
};

struct synergy_ipi_cpu_apic {
	__u32 cpu;		/* in */
	__u32 apic_id;		/* out */
};

struct synergy_ipi_send {
	__u32 target;		/* a CPU, or an APIC ID with SYNERGY_IPI_SEND_BY_APIC_ID */
	__u32 flags;
};

struct synergy_ipi_stats {
	__u64 sent;
	__u64 delivered;
	__u64 missed_not_running;
	__u64 missed_busy;
	__u64 missed_fault;
};

#define SYNERGY_IPI_IOC_VERSION _IOR(SYNERGY_IPI_IOC_MAGIC, 0x00, struct synergy_ipi_version)
#define SYNERGY_IPI_IOC_REGISTER _IOWR(SYNERGY_IPI_IOC_MAGIC, 0x01, struct synergy_ipi_register)
#define SYNERGY_IPI_IOC_UNREGISTER _IO(SYNERGY_IPI_IOC_MAGIC, 0x02)
#define SYNERGY_IPI_IOC_CPU_APIC_ID _IOWR(SYNERGY_IPI_IOC_MAGIC, 0x03, struct synergy_ipi_cpu_apic)
#define SYNERGY_IPI_IOC_SEND _IOW(SYNERGY_IPI_IOC_MAGIC, 0x04, struct synergy_ipi_send)
#define SYNERGY_IPI_IOC_STATS _IOR(SYNERGY_IPI_IOC_MAGIC, 0x05, struct synergy_ipi_stats)

#endif /* _SYNERGY_IPI_H */
