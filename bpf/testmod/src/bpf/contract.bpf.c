// SPDX-License-Identifier: GPL-2.0
/*
 * Implementations of bpf_testmod_ops that check the contract between the
 * type and its BPF implementations, one struct_ops map per case. The loader
 * creates only the maps a case names (libbpf then loads only their
 * programs), so the ones the verifier or libbpf must refuse live here too.
 */
#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "bpf_testmod.h"

char _license[] SEC("license") = "GPL";

/* The module's kfunc, callable from struct_ops programs only. */
extern int bpf_testmod_double(int n) __ksym;

/* Two implementations a link switches between; each leaves test_2,
 * test_3 and the rest NULL, which the module must then not call. */
SEC("struct_ops/test_1")
int BPF_PROG(ops_a_test_1)
{
	bpf_printk("A test_1 called\n");
	return 1;
}

SEC("struct_ops/test_1")
int BPF_PROG(ops_b_test_1)
{
	bpf_printk("B test_1 called\n");
	return 2;
}

SEC(".struct_ops.link")
struct bpf_testmod_ops ops_a = {
	.test_1 = (void *)ops_a_test_1,
};

SEC(".struct_ops.link")
struct bpf_testmod_ops ops_b = {
	.test_1 = (void *)ops_b_test_1,
};

/* Declared without a link: a link cannot be switched to it. */
SEC("struct_ops/test_1")
int BPF_PROG(unlinked_test_1)
{
	return 3;
}

SEC(".struct_ops")
struct bpf_testmod_ops ops_unlinked = {
	.test_1 = (void *)unlinked_test_1,
};

/* No test_1, which the module's .validate requires: refused at attach. */
SEC("struct_ops/test_2")
int BPF_PROG(incomplete_test_2, int a, int b)
{
	return a + b;
}

SEC(".struct_ops.link")
struct bpf_testmod_ops ops_incomplete = {
	.test_2 = (void *)incomplete_test_2,
};

/* A program for the member the module reserves: refused at load. */
SEC("struct_ops/test_reserved")
int BPF_PROG(reserved_test_reserved)
{
	return 0;
}

SEC(".struct_ops.link")
struct bpf_testmod_ops ops_reserved = {
	.test_1 = (void *)ops_a_test_1,
	.test_reserved = (void *)reserved_test_reserved,
};

/*
 * A later version of the type, as a newer header would have it: a field
 * this module does not know. libbpf refuses it set to nonzero, and drops
 * it when zero (a ___suffix names a flavour of the same type).
 */
struct bpf_testmod_ops___future {
	int (*test_1)(void);
	int future_field;
};

SEC(".struct_ops.link")
struct bpf_testmod_ops___future ops_future_set = {
	.test_1 = (void *)ops_a_test_1,
	.future_field = 1,
};

SEC(".struct_ops.link")
struct bpf_testmod_ops___future ops_future_zero = {
	.test_1 = (void *)ops_a_test_1,
};

/* Sleepable programs: for test_1 refused, for test_sleepable accepted. */
SEC("struct_ops.s/test_1")
int BPF_PROG(sleepable_test_1)
{
	return 1;
}

SEC(".struct_ops.link")
struct bpf_testmod_ops ops_sleepable_wrong = {
	.test_1 = (void *)sleepable_test_1,
};

SEC("struct_ops.s/test_sleepable")
int BPF_PROG(sleepable_test_sleepable, int len)
{
	bpf_printk("sleepable test_sleepable called with length %d\n", len);
	return len;
}

SEC(".struct_ops.link")
struct bpf_testmod_ops ops_sleepable = {
	.test_1 = (void *)ops_a_test_1,
	.test_sleepable = (void *)sleepable_test_sleepable,
};

/* The __nullable argument read without a check: refused at load. */
SEC("struct_ops/test_maybe_null")
int BPF_PROG(unchecked_test_maybe_null, int len, const struct bpf_testmod_message *message)
{
	return message->len;
}

SEC(".struct_ops.link")
struct bpf_testmod_ops ops_null_unchecked = {
	.test_1 = (void *)ops_a_test_1,
	.test_maybe_null = (void *)unchecked_test_maybe_null,
};

/* The same read after a check: accepted, and runs with NULL and without. */
SEC("struct_ops/test_maybe_null")
int BPF_PROG(checked_test_maybe_null, int len, const struct bpf_testmod_message *message)
{
	if (!message) {
		bpf_printk("test_maybe_null: no message\n");
		return -1;
	}
	bpf_printk("test_maybe_null: a message of %d bytes\n", message->len);
	return message->len;
}

SEC(".struct_ops.link")
struct bpf_testmod_ops ops_null_checked = {
	.test_1 = (void *)ops_a_test_1,
	.test_maybe_null = (void *)checked_test_maybe_null,
};

/* An op that calls the module's kfunc. */
SEC("struct_ops/test_2")
int BPF_PROG(kfunc_test_2, int a, int b)
{
	return bpf_testmod_double(a + b);
}

SEC(".struct_ops.link")
struct bpf_testmod_ops ops_kfunc = {
	.test_1 = (void *)ops_a_test_1,
	.test_2 = (void *)kfunc_test_2,
};

/*
 * B calling the module's kfunc too: update_race switches a link between
 * this one and A, attaching and detaching this one, so the kfunc runs on
 * calls that race .reg, .update and .unreg, and a race on what only the
 * kfunc reads is there to see.
 */
SEC(".struct_ops.link")
struct bpf_testmod_ops ops_b_kfunc = {
	.test_1 = (void *)ops_b_test_1,
	.test_2 = (void *)kfunc_test_2,
};

/* The same call from a program type the kfunc is not registered for. */
SEC("syscall")
int kfunc_from_syscall(void *ctx)
{
	return bpf_testmod_double(1);
}

/*
 * Every member the module calls, B's test_1 among them: member_storm
 * attaches and detaches this one while threads trigger, so they reach each
 * of the module's call paths (the kfunc, the __nullable argument, the
 * sleepable member outside the RCU section), and a race on any of them is
 * there for KCSAN to see.
 */
SEC("struct_ops/test_3")
int BPF_PROG(every_test_3, const char *buf, int len)
{
	bpf_printk("every test_3 called with length %d\n", len);
	return len;
}

SEC(".struct_ops.link")
struct bpf_testmod_ops ops_every = {
	.test_1 = (void *)ops_b_test_1,
	.test_2 = (void *)kfunc_test_2,
	.test_3 = (void *)every_test_3,
	.test_maybe_null = (void *)checked_test_maybe_null,
	.test_sleepable = (void *)sleepable_test_sleepable,
};
