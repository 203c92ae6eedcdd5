// SPDX-License-Identifier: GPL-2.0
/*
 * The C compiler's layout of every kernel structure the synergy modules touch from Rust: field
 * offsets, sizes, and where the user register frame sits on a task's stack; and of the user-space
 * structures kmod_ipi reads and writes (the uapi `struct rseq` and `struct rseq_cs`). Each module links
 * this (through its own one-line wrapper, kmod_ipi/c_layout.c and kmod_uintr/c_layout.c) and
 * compares it with what the Rust bindings say at init (kmod_common/c_layout.rs); on any
 * difference the module refuses to load. bindgen once got task_struct wrong by 48 bytes
 * (scripts/kernel/check-bindings-layout.sh says why): this makes such a mistake a load failure
 * instead of a read of the wrong field.
 *
 * The field order here and in `CLayout` (c_layout.rs) must be the same; `magic` at both ends
 * and `size` catch a mismatch of the two declarations themselves.
 */
#include <linux/irq_work.h>
#include <linux/preempt.h>
#include <linux/sched.h>
#include <linux/sched/task_stack.h>
#include <linux/stddef.h>
#include <linux/types.h>
#include <uapi/linux/rseq.h>
#include <asm/processor.h>
#include <asm/ptrace.h>
#include <asm/smp.h>

#define SYNERGY_C_LAYOUT_MAGIC 0x53594e4c41594f55ULL /* "SYNLAYOU" */
/* A field the configuration does not have. */
#define SYNERGY_ABSENT (~0ULL)

struct synergy_c_layout {
	u64 magic;
	u64 size;
	u64 task_struct_flags;
	u64 task_struct_stack;
	u64 task_struct_rseq_usrptr;
	u64 task_struct_rseq_sig;
	u64 regs_size;
	u64 regs_ip;
	u64 regs_cs;
	u64 regs_sp;
	u64 regs_in_stack;
	u64 callback_head_size;
	u64 callback_head_next;
	u64 callback_head_func;
	u64 hlist_node_size;
	u64 preempt_notifier_size;
	u64 preempt_notifier_link;
	u64 preempt_notifier_ops;
	u64 preempt_ops_size;
	u64 preempt_ops_sched_in;
	u64 preempt_ops_sched_out;
	u64 irq_work_size;
	u64 irq_work_func;
	u64 cpu_to_apicid_size;
	u64 user_rseq_rseq_cs;
	u64 user_rseq_cs_size;
	u64 user_rseq_cs_version;
	u64 user_rseq_cs_flags;
	u64 user_rseq_cs_start_ip;
	u64 user_rseq_cs_post_commit_offset;
	u64 user_rseq_cs_abort_ip;
	u64 magic_end;
};

extern const struct synergy_c_layout synergy_c_layout;

const struct synergy_c_layout synergy_c_layout = {
	.magic = SYNERGY_C_LAYOUT_MAGIC,
	.size = sizeof(struct synergy_c_layout),
	.task_struct_flags = offsetof(struct task_struct, flags),
	.task_struct_stack = offsetof(struct task_struct, stack),
#ifdef CONFIG_RSEQ
	.task_struct_rseq_usrptr = offsetof(struct task_struct, rseq.usrptr),
	.task_struct_rseq_sig = offsetof(struct task_struct, rseq.sig),
#else
	.task_struct_rseq_usrptr = SYNERGY_ABSENT,
	.task_struct_rseq_sig = SYNERGY_ABSENT,
#endif
	.regs_size = sizeof(struct pt_regs),
	.regs_ip = offsetof(struct pt_regs, ip),
	.regs_cs = offsetof(struct pt_regs, cs),
	.regs_sp = offsetof(struct pt_regs, sp),
	/* task_pt_regs(): the frame's offset from the bottom of the task's stack. */
	.regs_in_stack = THREAD_SIZE - TOP_OF_KERNEL_STACK_PADDING - sizeof(struct pt_regs),
	.callback_head_size = sizeof(struct callback_head),
	.callback_head_next = offsetof(struct callback_head, next),
	.callback_head_func = offsetof(struct callback_head, func),
	.hlist_node_size = sizeof(struct hlist_node),
#ifdef CONFIG_PREEMPT_NOTIFIERS
	.preempt_notifier_size = sizeof(struct preempt_notifier),
	.preempt_notifier_link = offsetof(struct preempt_notifier, link),
	.preempt_notifier_ops = offsetof(struct preempt_notifier, ops),
	.preempt_ops_size = sizeof(struct preempt_ops),
	.preempt_ops_sched_in = offsetof(struct preempt_ops, sched_in),
	.preempt_ops_sched_out = offsetof(struct preempt_ops, sched_out),
#else
	.preempt_notifier_size = SYNERGY_ABSENT,
	.preempt_notifier_link = SYNERGY_ABSENT,
	.preempt_notifier_ops = SYNERGY_ABSENT,
	.preempt_ops_size = SYNERGY_ABSENT,
	.preempt_ops_sched_in = SYNERGY_ABSENT,
	.preempt_ops_sched_out = SYNERGY_ABSENT,
#endif
	.irq_work_size = sizeof(struct irq_work),
	.irq_work_func = offsetof(struct irq_work, func),
	.cpu_to_apicid_size = sizeof(x86_cpu_to_apicid),
	/* The user-space ABI kmod_ipi reads and writes: struct rseq and struct rseq_cs. */
	.user_rseq_rseq_cs = offsetof(struct rseq, rseq_cs),
	.user_rseq_cs_size = sizeof(struct rseq_cs),
	.user_rseq_cs_version = offsetof(struct rseq_cs, version),
	.user_rseq_cs_flags = offsetof(struct rseq_cs, flags),
	.user_rseq_cs_start_ip = offsetof(struct rseq_cs, start_ip),
	.user_rseq_cs_post_commit_offset = offsetof(struct rseq_cs, post_commit_offset),
	.user_rseq_cs_abort_ip = offsetof(struct rseq_cs, abort_ip),
	.magic_end = SYNERGY_C_LAYOUT_MAGIC,
};
