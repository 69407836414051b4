/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The one definition of the ops table. The module registers it as a
 * struct_ops type; the BPF program includes this same header to implement it,
 * so the two can never disagree about a member's place or signature.
 */
#ifndef BPF_TESTMOD_H
#define BPF_TESTMOD_H

/* What a trigger wrote, as test_maybe_null sees it (NULL for an empty write). */
struct bpf_testmod_message {
	int len;
	char text[64];
};

struct bpf_testmod_ops {
	/* The tutorial's three members. test_1 is required: .validate refuses
	 * an implementation without it when it is attached. */
	int (*test_1)(void);
	int (*test_2)(int a, int b);
	int (*test_3)(const char *buf, int len);
	/* Beyond the tutorial (README): `message` may be NULL (its stub names
	 * it message__nullable), so a program must check it before reading. */
	int (*test_maybe_null)(int len, const struct bpf_testmod_message *message);
	/* The one member a sleepable program (SEC("struct_ops.s/...")) may
	 * implement: the module calls it where it may sleep. */
	int (*test_sleepable)(int len);
	/* Reserved for a later version: .check_member refuses any program for it. */
	int (*test_reserved)(void);
};

#endif /* BPF_TESTMOD_H */
