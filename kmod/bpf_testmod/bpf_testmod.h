/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The one definition of the ops table. The module registers it as a
 * struct_ops type; the BPF program includes this same header to implement it,
 * so the two can never disagree about a member's place or signature.
 */
#ifndef BPF_TESTMOD_H
#define BPF_TESTMOD_H

struct bpf_testmod_ops {
	int (*test_1)(void);
	int (*test_2)(int a, int b);
	int (*test_3)(const char *buf, int len);
};

#endif /* BPF_TESTMOD_H */
