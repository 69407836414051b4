/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The one definition of struct @NAME@_ops: the module registers it as a
 * struct_ops type, and the BPF programs include this same header to
 * implement it, so the two never disagree about a member's place or type.
 */
#ifndef @NAME_UPPER@_H
#define @NAME_UPPER@_H

struct @NAME@_ops {
	int (*op_1)(void);
	int (*op_2)(int a, int b);
};

#endif /* @NAME_UPPER@_H */
