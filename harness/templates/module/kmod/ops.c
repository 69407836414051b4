// SPDX-License-Identifier: GPL-2.0
/*
 * Defines struct @NAME@_ops (@NAME@.h) as a struct_ops type, lets one BPF
 * implementation attach at a time, and calls it from /proc/@NAME@_trigger.
 */
#include <linux/init.h>
#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/bpf.h>
#include <linux/btf.h>
#include <linux/btf_ids.h>
#include <linux/proc_fs.h>
#include <linux/bpf_verifier.h>

#include "@NAME@.h"

static struct @NAME@_ops __rcu *attached_ops;
static struct proc_dir_entry *trigger_file;

/*
 * CFI stubs: with kCFI the kernel calls a BPF trampoline through a pointer
 * whose type hash comes from these, so each has its member's signature.
 */
static int @NAME@_ops__op_1(void)
{
	return 0;
}

static int @NAME@_ops__op_2(int a, int b)
{
	return 0;
}

static struct @NAME@_ops __bpf_ops_@NAME@_ops = {
	.op_1 = @NAME@_ops__op_1,
	.op_2 = @NAME@_ops__op_2,
};

static int @NAME@_ops_init(struct btf *btf)
{
	return 0;
}

/* A program may read its member's arguments, as BTF types them, and never write them. */
static bool @NAME@_ops_is_valid_access(int off, int size, enum bpf_access_type type,
				      const struct bpf_prog *prog,
				      struct bpf_insn_access_aux *info)
{
	return bpf_tracing_btf_ctx_access(off, size, type, prog, info);
}

/* The base helpers, bpf_trace_printk among them, and no others. */
static const struct bpf_func_proto *
@NAME@_ops_get_func_proto(enum bpf_func_id func_id, const struct bpf_prog *prog)
{
	return bpf_base_func_proto(func_id, prog);
}

static const struct bpf_verifier_ops @NAME@_verifier_ops = {
	.is_valid_access = @NAME@_ops_is_valid_access,
	.get_func_proto = @NAME@_ops_get_func_proto,
};

static int @NAME@_ops_init_member(const struct btf_type *t, const struct btf_member *member,
				 void *kdata, const void *udata)
{
	return 0;
}

static int @NAME@_ops_reg(void *kdata, struct bpf_link *link)
{
	/* One implementation at a time: a second attach is refused. */
	if (cmpxchg(&attached_ops, NULL, kdata) != NULL)
		return -EEXIST;
	pr_info("@NAME@_ops registered\n");
	return 0;
}

static void @NAME@_ops_unreg(void *kdata, struct bpf_link *link)
{
	if (cmpxchg(&attached_ops, kdata, NULL) != kdata) {
		pr_warn("@NAME@_ops: unexpected unreg\n");
		return;
	}
	pr_info("@NAME@_ops unregistered\n");
}

static struct bpf_struct_ops @NAME@_ops_struct_ops = {
	.verifier_ops = &@NAME@_verifier_ops,
	.init = @NAME@_ops_init,
	.init_member = @NAME@_ops_init_member,
	.reg = @NAME@_ops_reg,
	.unreg = @NAME@_ops_unreg,
	.cfi_stubs = &__bpf_ops_@NAME@_ops,
	.name = "@NAME@_ops",
	.owner = THIS_MODULE,
};

/* Every write calls each op of the attached implementation once. */
static ssize_t trigger_write(struct file *file, const char __user *buf, size_t count,
			     loff_t *pos)
{
	struct @NAME@_ops *ops;

	/* RCU keeps the ops alive while a detach swaps them out. */
	rcu_read_lock();
	ops = rcu_dereference(attached_ops);
	if (ops) {
		if (ops->op_1)
			pr_info("op_1() returned: %d\n", ops->op_1());
		if (ops->op_2)
			pr_info("op_2(10, 20) returned: %d\n", ops->op_2(10, 20));
	} else {
		pr_info("No @NAME@_ops registered\n");
	}
	rcu_read_unlock();
	return count;
}

static const struct proc_ops trigger_proc_ops = {
	.proc_write = trigger_write,
};

static int __init @NAME@_init(void)
{
	int ret = register_bpf_struct_ops(&@NAME@_ops_struct_ops, @NAME@_ops);

	if (ret) {
		pr_err("@NAME@: registering struct_ops failed: %d\n", ret);
		return ret;
	}
	trigger_file = proc_create("@NAME@_trigger", 0222, NULL, &trigger_proc_ops);
	if (!trigger_file)
		return -ENOMEM;
	pr_info("@NAME@ loaded\n");
	return 0;
}

/* The type goes with the module's BTF; .owner pins the module while a map uses it. */
static void __exit @NAME@_exit(void)
{
	proc_remove(trigger_file);
	pr_info("@NAME@ unloaded\n");
}

module_init(@NAME@_init);
module_exit(@NAME@_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("struct @NAME@_ops, a struct_ops type for BPF");
