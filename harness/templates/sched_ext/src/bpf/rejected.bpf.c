// SPDX-License-Identifier: GPL-2.0
/*
 * A scheduler the verifier must refuse: its ops.enqueue() sets the task's
 * weight (p->scx.weight), and sched_ext lets a scheduler write only
 * p->scx.slice, p->scx.dsq_vtime and p->scx.disallow of a task. The kernel
 * refuses any other store with -EACCES and no message in the verifier's
 * log; the loader (harness::loader::sched_ext) names the member and the
 * rule. It never runs, so its enqueue needs to do nothing else.
 */
#include <scx/common.bpf.h>

char _license[] SEC("license") = "GPL";

UEI_DEFINE(uei);

void BPF_STRUCT_OPS(rejected_enqueue, struct task_struct *p, u64 enq_flags)
{
	p->scx.weight = 1;
}

void BPF_STRUCT_OPS(rejected_exit, struct scx_exit_info *ei)
{
	UEI_RECORD(uei, ei);
}

SCX_OPS_DEFINE(rejected_ops,
	       .enqueue = (void *)rejected_enqueue,
	       .exit = (void *)rejected_exit,
	       .name = "rejected");
