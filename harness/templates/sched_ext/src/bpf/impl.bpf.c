// SPDX-License-Identifier: GPL-2.0
/*
 * @NAME@: a sched_ext scheduler with one global FIFO queue. ops.enqueue()
 * puts each task the kernel hands it at the end of the queue; a CPU with
 * nothing left to run takes the task at its head (ops.dispatch()). Both
 * are counted per CPU in `counters`, which the loader sums.
 *
 * The harness compiles this file against each kernel it runs on, with that
 * kernel's vmlinux.h, libbpf headers and tools/sched_ext/include (where
 * <scx/common.bpf.h> is): no header is copied into this crate, so none can
 * go stale. Its kfunc names are the kernel's: 6.13 renamed
 * scx_bpf_dispatch() to scx_bpf_dsq_insert() and scx_bpf_consume() to
 * scx_bpf_dsq_move_to_local(), and later kernels dropped the old names.
 * The harness passes the kernel's version as HARNESS_LINUX_VERSION_CODE,
 * and queue_insert() and queue_take() below use the names (and, from 7.1,
 * the arguments) that kernel's headers declare. Built and run here on
 * 6.12; the newer branches were compiled against sched-ext/scx's headers of
 * 7.0 and 7.1, not run.
 */
#include <scx/common.bpf.h>

char _license[] SEC("license") = "GPL";

#ifndef HARNESS_LINUX_VERSION_CODE
#error "HARNESS_LINUX_VERSION_CODE is not set: the harness compiles this file (BpfObject::own in src/lib.rs)"
#endif

/* The queue: a dispatch queue of this scheduler's own, made by ops.init(). */
#define QUEUE_DSQ 0

#if HARNESS_LINUX_VERSION_CODE >= KERNEL_VERSION(7, 1, 0)
/* 7.1 gave scx_bpf_dsq_move_to_local() enqueue flags. */
#define queue_insert(p, enq_flags) scx_bpf_dsq_insert(p, QUEUE_DSQ, SCX_SLICE_DFL, enq_flags)
#define queue_take() scx_bpf_dsq_move_to_local(QUEUE_DSQ, 0)
#elif HARNESS_LINUX_VERSION_CODE >= KERNEL_VERSION(6, 13, 0)
#define queue_insert(p, enq_flags) scx_bpf_dsq_insert(p, QUEUE_DSQ, SCX_SLICE_DFL, enq_flags)
#define queue_take() scx_bpf_dsq_move_to_local(QUEUE_DSQ)
#else
#define queue_insert(p, enq_flags) scx_bpf_dispatch(p, QUEUE_DSQ, SCX_SLICE_DFL, enq_flags)
#define queue_take() scx_bpf_consume(QUEUE_DSQ)
#endif

/*
 * The loader's option (read-only once loaded): call scx_bpf_error() at the
 * Nth dispatch, so that the kernel ejects the scheduler. 0: never.
 */
const volatile u64 error_after_dispatches;

/* What `counters` counts; the loader reads the same indexes. */
enum counter {
	COUNT_ENQUEUED,
	COUNT_DISPATCHED,
	NR_COUNTERS,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(key_size, sizeof(u32));
	__uint(value_size, sizeof(u64));
	__uint(max_entries, NR_COUNTERS);
} counters SEC(".maps");

/* Dispatches over every CPU, for error_after_dispatches. */
u64 nr_dispatched;

/* Where ops.exit() leaves why the scheduler ended, for the loader. */
UEI_DEFINE(uei);

static void count(u32 index)
{
	u64 *value = bpf_map_lookup_elem(&counters, &index);

	if (value)
		(*value)++;
}

/*
 * The CPU a waking task goes to, chosen as sched_ext's default chooses it
 * (an idle one if there is one, which then wakes up to take from the
 * queue), without the default's shortcut of handing the task to that CPU
 * directly: every task waits in the queue, and is counted.
 */
s32 BPF_STRUCT_OPS(@NAME@_select_cpu, struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
	bool is_idle = false;

	return scx_bpf_select_cpu_dfl(p, prev_cpu, wake_flags, &is_idle);
}

void BPF_STRUCT_OPS(@NAME@_enqueue, struct task_struct *p, u64 enq_flags)
{
	count(COUNT_ENQUEUED);
	queue_insert(p, enq_flags);
}

void BPF_STRUCT_OPS(@NAME@_dispatch, s32 cpu, struct task_struct *prev)
{
	if (!queue_take())
		return;
	count(COUNT_DISPATCHED);
	/* Exactly one CPU sees the Nth dispatch, so the error is raised once. */
	if (error_after_dispatches &&
	    __sync_add_and_fetch(&nr_dispatched, 1) == error_after_dispatches)
		scx_bpf_error("dispatched %llu tasks, as error_after_dispatches asked",
			      error_after_dispatches);
}

/* Sleepable: making a dispatch queue may allocate. */
s32 BPF_STRUCT_OPS_SLEEPABLE(@NAME@_init)
{
	return scx_bpf_create_dsq(QUEUE_DSQ, -1);
}

void BPF_STRUCT_OPS(@NAME@_exit, struct scx_exit_info *ei)
{
	UEI_RECORD(uei, ei);
}

SCX_OPS_DEFINE(@NAME@_ops,
	       .select_cpu = (void *)@NAME@_select_cpu,
	       .enqueue = (void *)@NAME@_enqueue,
	       .dispatch = (void *)@NAME@_dispatch,
	       .init = (void *)@NAME@_init,
	       .exit = (void *)@NAME@_exit,
	       .name = "@NAME@");
