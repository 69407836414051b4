// SPDX-License-Identifier: GPL-2.0
/*
 * A minimal struct_ops subsystem: it defines struct bpf_testmod_ops, lets one
 * BPF implementation attach at a time, and calls it from a proc file.
 */
#include <linux/init.h>
#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/bpf.h>
#include <linux/btf.h>
#include <linux/btf_ids.h>
#include <linux/proc_fs.h>
#include <linux/bpf_verifier.h>
#include <linux/mutex.h>
#include <linux/slab.h>

#include "bpf_testmod.h"

static struct bpf_testmod_ops __rcu *testmod_ops;

static struct proc_dir_entry *trigger_file;

/*
 * Bugs planted on purpose, each in a test-only build of its own
 * (-DPLANT_...), to prove that the debug kernel reports them
 * (tests/vm_debug_kernel.rs). The normal build has none of them.
 */
#ifdef PLANT_MISSING_RCU_READ_LOCK
/* The ops are read and called outside an RCU read section. */
#define trigger_read_lock() do { } while (0)
#define trigger_read_unlock() do { } while (0)
#else
#define trigger_read_lock() rcu_read_lock()
#define trigger_read_unlock() rcu_read_unlock()
#endif

#ifdef PLANT_LOCK_ORDER
static DEFINE_MUTEX(planted_attach_lock);
static DEFINE_MUTEX(planted_trigger_lock);

/* Attach takes the two locks in one order, a trigger in the other. */
static void planted_take_locks(bool on_trigger)
{
	struct mutex *first = on_trigger ? &planted_trigger_lock : &planted_attach_lock;
	struct mutex *second = on_trigger ? &planted_attach_lock : &planted_trigger_lock;

	mutex_lock(first);
	mutex_lock(second);
	mutex_unlock(second);
	mutex_unlock(first);
}
#else
static void planted_take_locks(bool on_trigger)
{
}
#endif

#ifdef PLANT_USE_AFTER_FREE
static char planted_sink;

/* Reads a copy of the message after freeing it. */
static void planted_use_after_free(const char *message, size_t len)
{
	char *copy = kmemdup(message, len + 1, GFP_KERNEL);

	if (!copy)
		return;
	kfree(copy);
	/* Hide the pointer from the compiler, which would warn. */
	OPTIMIZER_HIDE_VAR(copy);
	WRITE_ONCE(planted_sink, READ_ONCE(copy[0]));
}
#else
static void planted_use_after_free(const char *message, size_t len)
{
}
#endif

/*
 * CFI stubs: with kCFI the kernel calls a BPF trampoline through a pointer
 * whose type hash comes from these functions, so each needs the member's exact
 * signature. Named <ops>__<member> as the kernel's own struct_ops are.
 */
static int bpf_testmod_ops__test_1(void)
{
	return 0;
}

static int bpf_testmod_ops__test_2(int a, int b)
{
	return 0;
}

static int bpf_testmod_ops__test_3(const char *buf, int len)
{
	return 0;
}

static struct bpf_testmod_ops __bpf_ops_bpf_testmod_ops = {
	.test_1 = bpf_testmod_ops__test_1,
	.test_2 = bpf_testmod_ops__test_2,
	.test_3 = bpf_testmod_ops__test_3,
};

static int bpf_testmod_ops_init(struct btf *btf)
{
	return 0;
}

/*
 * Context access as the kernel's own struct_ops types check it: a program
 * may read the arguments its member is called with, at the offsets and with
 * the types BTF gives them, and may never write them. (The tutorial returned
 * true here, which let a program write its context at any offset.)
 */
static bool bpf_testmod_ops_is_valid_access(int off, int size,
					    enum bpf_access_type type,
					    const struct bpf_prog *prog,
					    struct bpf_insn_access_aux *info)
{
	return bpf_tracing_btf_ctx_access(off, size, type, prog, info);
}

/*
 * struct_ops programs get no helpers unless the type hands them out; the base
 * set includes bpf_trace_printk, which the implementations log with.
 */
static const struct bpf_func_proto *
bpf_testmod_ops_get_func_proto(enum bpf_func_id func_id,
			       const struct bpf_prog *prog)
{
	return bpf_base_func_proto(func_id, prog);
}

static const struct bpf_verifier_ops bpf_testmod_verifier_ops = {
	.is_valid_access = bpf_testmod_ops_is_valid_access,
	.get_func_proto = bpf_testmod_ops_get_func_proto,
};

/* Returning 0 leaves every member to the kernel's default handling. */
static int bpf_testmod_ops_init_member(const struct btf_type *t,
				       const struct btf_member *member,
				       void *kdata, const void *udata)
{
	return 0;
}

static int bpf_testmod_ops_reg(void *kdata, struct bpf_link *link)
{
	struct bpf_testmod_ops *ops = kdata;

	planted_take_locks(false);
	/* One implementation at a time: a second attach is refused. */
	if (cmpxchg(&testmod_ops, NULL, ops) != NULL)
		return -EEXIST;

	pr_info("bpf_testmod_ops registered\n");
	return 0;
}

static void bpf_testmod_ops_unreg(void *kdata, struct bpf_link *link)
{
	struct bpf_testmod_ops *ops = kdata;

	if (cmpxchg(&testmod_ops, ops, NULL) != ops) {
		pr_warn("bpf_testmod_ops: unexpected unreg\n");
		return;
	}

	pr_info("bpf_testmod_ops unregistered\n");
}

static struct bpf_struct_ops bpf_testmod_ops_struct_ops = {
	.verifier_ops = &bpf_testmod_verifier_ops,
	.init = bpf_testmod_ops_init,
	.init_member = bpf_testmod_ops_init_member,
	.reg = bpf_testmod_ops_reg,
	.unreg = bpf_testmod_ops_unreg,
	.cfi_stubs = &__bpf_ops_bpf_testmod_ops,
	.name = "bpf_testmod_ops",
	.owner = THIS_MODULE,
};

/*
 * One write(2) is one call of each op, whatever its length: the message is
 * cut to the buffer and the whole write is consumed. (The tutorial returned
 * the cut length, so a caller that writes until everything is taken, as
 * Rust's write_all does, wrote the rest again and called the ops twice.)
 */
static ssize_t trigger_write(struct file *file, const char __user *buf,
			     size_t count, loff_t *pos)
{
	struct bpf_testmod_ops *ops;
	char kbuf[64];
	size_t len = min(count, sizeof(kbuf) - 1);
	int ret = 0;

	if (copy_from_user(kbuf, buf, len))
		return -EFAULT;

	kbuf[len] = '\0';
	if (len < count)
		pr_info("trigger: message of %zu bytes cut to %zu\n", count, len);
	planted_use_after_free(kbuf, len);
	planted_take_locks(true);

	/* RCU keeps the ops alive while a concurrent detach swaps them out. */
	trigger_read_lock();
	ops = rcu_dereference(testmod_ops);
	if (ops) {
		pr_info("Calling struct_ops callbacks:\n");

		if (ops->test_1) {
			ret = ops->test_1();
			pr_info("test_1() returned: %d\n", ret);
		}

		if (ops->test_2) {
			ret = ops->test_2(10, 20);
			pr_info("test_2(10, 20) returned: %d\n", ret);
		}

		if (ops->test_3) {
			ops->test_3(kbuf, len);
			pr_info("test_3() called with buffer\n");
		}
	} else {
		pr_info("No struct_ops registered\n");
	}
	trigger_read_unlock();

	return count;
}

static const struct proc_ops trigger_proc_ops = {
	.proc_write = trigger_write,
};

static int __init testmod_init(void)
{
	int ret;

	ret = register_bpf_struct_ops(&bpf_testmod_ops_struct_ops, bpf_testmod_ops);
	if (ret) {
		pr_err("Failed to register struct_ops: %d\n", ret);
		return ret;
	}

	trigger_file = proc_create("bpf_testmod_trigger", 0222, NULL, &trigger_proc_ops);
	if (!trigger_file)
		return -ENOMEM;

	pr_info("bpf_testmod loaded with struct_ops support\n");
	return 0;
}

/*
 * There is no unregister_bpf_struct_ops(): the type goes away with the
 * module's BTF, and .owner keeps the module pinned while a map uses it.
 */
static void __exit testmod_exit(void)
{
	proc_remove(trigger_file);
	pr_info("bpf_testmod unloaded\n");
}

module_init(testmod_init);
module_exit(testmod_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("struct_ops VM test harness");
MODULE_DESCRIPTION("BPF struct_ops test module");
MODULE_VERSION("1.0");
