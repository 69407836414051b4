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
#include <linux/srcu.h>

#include "bpf_testmod.h"

static struct bpf_testmod_ops __rcu *testmod_ops;

static struct proc_dir_entry *trigger_file;

/*
 * The sleepable member is called outside the RCU read section (a sleepable
 * program may sleep); this SRCU keeps its implementation alive meanwhile,
 * and .unreg and .update wait for it before the old one may go.
 */
DEFINE_STATIC_SRCU(testmod_srcu);

/*
 * Bugs planted on purpose, each in a test-only build of its own
 * (-DPLANT_...), to prove that the debug kernel reports them
 * (tests/vm_debug_kernel.rs), that the race kernel does
 * (tests/vm_race_kernel.rs), or that a scenario fails on them
 * (tests/vm_mutants.rs); PLANT_VALIDATE_RACE measures a shape the race
 * kernel rarely sees (the guide's kernels chapter). The normal build has
 * none of them.
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

#ifdef PLANT_LEAK
/* Keeps a copy of every message and never frees it. */
static void planted_leak(const char *message, size_t len)
{
	char *copy = kmemdup(message, len + 1, GFP_KERNEL);

	/* Hide the pointer from the compiler, which would drop the copy. */
	OPTIMIZER_HIDE_VAR(copy);
}
#else
static void planted_leak(const char *message, size_t len)
{
}
#endif

#ifdef PLANT_SHIFT
static unsigned int planted_bits;

/* Shifts by more than the type's width once the message is 12 bytes or more. */
static void planted_shift(size_t len)
{
	unsigned int shift = len + 20;

	OPTIMIZER_HIDE_VAR(shift);
	WRITE_ONCE(planted_bits, 1u << shift);
}
#else
static void planted_shift(size_t len)
{
}
#endif

#ifdef PLANT_INDEX
/*
 * Indexes past a fixed array into the member after it: the access stays
 * inside the object, where KASAN sees nothing, and UBSAN's bounds check
 * sees the index.
 */
static struct {
	char recent[8];
	unsigned long triggers;
} planted_stats;

static void planted_index(size_t len)
{
	size_t index = len % 12;

	OPTIMIZER_HIDE_VAR(index);
	WRITE_ONCE(planted_stats.recent[index], 1);
}
#else
static void planted_index(size_t len)
{
}
#endif

#ifdef PLANT_DATA_RACE
static unsigned long planted_calls;

/*
 * Counts the triggers, as a lost update: read as a trigger starts, written
 * as it ends, with no lock, while concurrent triggers do the same.
 */
static unsigned long planted_count_begin(void)
{
	return planted_calls;
}

static void planted_count_end(unsigned long seen)
{
	planted_calls = seen + 1;
}
#else
static unsigned long planted_count_begin(void)
{
	return 0;
}

static void planted_count_end(unsigned long seen)
{
}
#endif

/*
 * The _IN_KFUNC forms of the next two plants read only in the kfunc, so
 * only calls of an implementation that calls it race the write (where each
 * reads: IS_ENABLED(PLANT_..._IN_KFUNC) at the two reading sites).
 */
#ifdef PLANT_ATTACH_FIELD_RACE_IN_KFUNC
#define PLANT_ATTACH_FIELD_RACE
#endif
#ifdef PLANT_UNREG_FLAG_RACE_IN_KFUNC
#define PLANT_UNREG_FLAG_RACE
#endif

#ifdef PLANT_ATTACH_FIELD_RACE
static unsigned int planted_generation;

/*
 * A field written once per attach or update (in .reg and .update, under
 * the core's lock but with no lock the callers take) and read on every
 * call, plainly on both sides. (Each plant's variable has a size of its
 * own, 8, 4 and 1 bytes, so that a KCSAN report of a value that changed
 * under a reader, which names no writer, still says which one raced.)
 */
static void planted_new_generation(void)
{
	planted_generation = planted_generation + 1;
}

static void planted_read_generation(void)
{
	unsigned int seen = planted_generation;

	/*
	 * Keeps the read: OPTIMIZER_HIDE_VAR's asm has an output nobody uses,
	 * so the compiler drops it and the read with it (then there was no
	 * reading side to find).
	 */
	barrier_data(&seen);
}
#else
static void planted_new_generation(void)
{
}

static void planted_read_generation(void)
{
}
#endif

#ifdef PLANT_UNREG_FLAG_RACE
static bool planted_draining;

/*
 * A flag written in .unreg (raised while the old implementation drains,
 * lowered after) and read on every call, plainly on both sides.
 */
static void planted_set_draining(bool draining)
{
	planted_draining = draining;
}

static void planted_read_draining(void)
{
	bool seen = planted_draining;

	barrier_data(&seen); /* keeps the read, as in planted_read_generation */
}
#else
static void planted_set_draining(bool draining)
{
}

static void planted_read_draining(void)
{
}
#endif

#ifdef PLANT_VALIDATE_RACE
static unsigned short planted_validations;

/*
 * Counts the implementations validated, as a lost update: .validate runs
 * once per map written, with no lock shared between two maps, so two
 * processes attaching at once race here. Both sides are rare (once per
 * attach), unlike the plants above, whose other side is every call.
 */
static void planted_count_validation(void)
{
	planted_validations = planted_validations + 1;
}
#else
static void planted_count_validation(void)
{
}
#endif

#ifdef PLANT_KFUNC_RACE
static u8 planted_doublings;

/*
 * Counts the kfunc's calls, as a lost update: the kfunc runs on every call
 * of an implementation that calls it, and only then, with no lock between
 * two triggers' calls. Both sides are in the kfunc, so KCSAN's report
 * names it twice.
 */
static void planted_count_doubling(void)
{
	planted_doublings = planted_doublings + 1;
}
#else
static void planted_count_doubling(void)
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

/* The __nullable suffix is how the verifier learns that the argument may be NULL. */
static int bpf_testmod_ops__test_maybe_null(int len,
					    const struct bpf_testmod_message *message__nullable)
{
	return 0;
}

static int bpf_testmod_ops__test_sleepable(int len)
{
	return 0;
}

static int bpf_testmod_ops__test_reserved(void)
{
	return 0;
}

static struct bpf_testmod_ops __bpf_ops_bpf_testmod_ops = {
	.test_1 = bpf_testmod_ops__test_1,
	.test_2 = bpf_testmod_ops__test_2,
	.test_3 = bpf_testmod_ops__test_3,
	.test_maybe_null = bpf_testmod_ops__test_maybe_null,
	.test_sleepable = bpf_testmod_ops__test_sleepable,
	.test_reserved = bpf_testmod_ops__test_reserved,
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

/*
 * Which member a program may implement, asked by the verifier at load:
 * none may implement the reserved member, and only test_sleepable may be
 * sleepable, since the others are called inside an RCU read section.
 */
static int bpf_testmod_ops_check_member(const struct btf_type *t,
					const struct btf_member *member,
					const struct bpf_prog *prog)
{
	u32 moff = __btf_member_bit_offset(t, member) / 8;

	switch (moff) {
	case offsetof(struct bpf_testmod_ops, test_reserved):
		return -EOPNOTSUPP;
	case offsetof(struct bpf_testmod_ops, test_sleepable):
		return 0;
	default:
		return prog->sleepable ? -EINVAL : 0;
	}
}

/*
 * An implementation must have test_1. The core calls this when a link's map
 * is written, that is at attach, before .reg or .update; .reg calls it for a
 * map attached without a link, which the core does not validate.
 */
static int bpf_testmod_ops_validate(void *kdata)
{
	struct bpf_testmod_ops *ops = kdata;

	planted_count_validation();
	if (!ops->test_1) {
		pr_err("bpf_testmod_ops: test_1 is required\n");
		return -EINVAL;
	}
	return 0;
}

static int bpf_testmod_ops_reg(void *kdata, struct bpf_link *link)
{
	struct bpf_testmod_ops *ops = kdata;
	int err;

	planted_take_locks(false);
	if (!link) {
		err = bpf_testmod_ops_validate(kdata);
		if (err)
			return err;
	}
	/* One implementation at a time: a second attach is refused. */
	if (cmpxchg(&testmod_ops, NULL, ops) != NULL)
		return -EEXIST;
	planted_new_generation();

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
	planted_set_draining(true);
	synchronize_srcu(&testmod_srcu);
	planted_set_draining(false);

	pr_info("bpf_testmod_ops unregistered\n");
}

#ifdef PLANT_UPDATE_NOOP
/* An .update that says yes and switches nothing: the old one keeps running. */
static int bpf_testmod_ops_update(void *kdata, void *old_kdata, struct bpf_link *link)
{
	pr_info("bpf_testmod_ops updated\n");
	return 0;
}
#else
/*
 * A link switches implementation: the new one replaces the old one in one
 * store, so a trigger calls one or the other, never neither and never both.
 * The core has validated the new one and checked it is of this type.
 */
static int bpf_testmod_ops_update(void *kdata, void *old_kdata, struct bpf_link *link)
{
	struct bpf_testmod_ops *ops = kdata, *old = old_kdata;

	if (cmpxchg(&testmod_ops, old, ops) != old)
		return -ENOENT;
	planted_new_generation();
	synchronize_srcu(&testmod_srcu);
	pr_info("bpf_testmod_ops updated\n");
	return 0;
}
#endif

static struct bpf_struct_ops bpf_testmod_ops_struct_ops = {
	.verifier_ops = &bpf_testmod_verifier_ops,
	.init = bpf_testmod_ops_init,
	.init_member = bpf_testmod_ops_init_member,
	.check_member = bpf_testmod_ops_check_member,
	.validate = bpf_testmod_ops_validate,
	.reg = bpf_testmod_ops_reg,
	.unreg = bpf_testmod_ops_unreg,
	.update = bpf_testmod_ops_update,
	.cfi_stubs = &__bpf_ops_bpf_testmod_ops,
	.name = "bpf_testmod_ops",
	.owner = THIS_MODULE,
};

__bpf_kfunc_start_defs();

/* A kfunc the ops may call; registered for struct_ops programs only. */
__bpf_kfunc int bpf_testmod_double(int n)
{
	planted_count_doubling();
	if (IS_ENABLED(PLANT_ATTACH_FIELD_RACE_IN_KFUNC))
		planted_read_generation();
	if (IS_ENABLED(PLANT_UNREG_FLAG_RACE_IN_KFUNC))
		planted_read_draining();
	pr_info("bpf_testmod_double(%d) called\n", n);
	return 2 * n;
}

__bpf_kfunc_end_defs();

BTF_KFUNCS_START(bpf_testmod_kfunc_ids)
BTF_ID_FLAGS(func, bpf_testmod_double)
BTF_KFUNCS_END(bpf_testmod_kfunc_ids)

static const struct btf_kfunc_id_set bpf_testmod_kfunc_set = {
	.owner = THIS_MODULE,
	.set = &bpf_testmod_kfunc_ids,
};

/*
 * The sleepable member, outside the RCU read section the others run in,
 * where its program may sleep.
 */
static void call_sleepable(size_t len)
{
	struct bpf_testmod_ops *ops;
	int idx, ret;

	idx = srcu_read_lock(&testmod_srcu);
	ops = srcu_dereference(testmod_ops, &testmod_srcu);
	if (ops && ops->test_sleepable) {
		ret = ops->test_sleepable(len);
		pr_info("test_sleepable(%zu) returned: %d\n", len, ret);
	}
	srcu_read_unlock(&testmod_srcu, idx);
}

/* test_maybe_null gets the message, or NULL for an empty write. */
static void call_maybe_null(struct bpf_testmod_ops *ops,
			    const struct bpf_testmod_message *message)
{
	const struct bpf_testmod_message *arg = message->len ? message : NULL;
	int ret;

	if (!ops->test_maybe_null)
		return;
	ret = ops->test_maybe_null(message->len, arg);
	pr_info("test_maybe_null(%d, %s) returned: %d\n", message->len,
		arg ? "message" : "NULL", ret);
}

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
	struct bpf_testmod_message message = {};
	char *kbuf = message.text;
	size_t len = min(count, sizeof(message.text) - 1);
	unsigned long seen;
	int ret = 0;

	if (copy_from_user(kbuf, buf, len))
		return -EFAULT;

	kbuf[len] = '\0';
	message.len = len;
	if (len < count)
		pr_info("trigger: message of %zu bytes cut to %zu\n", count, len);
	planted_use_after_free(kbuf, len);
	planted_leak(kbuf, len);
	planted_shift(len);
	planted_index(len);
	seen = planted_count_begin();
	if (!IS_ENABLED(PLANT_ATTACH_FIELD_RACE_IN_KFUNC))
		planted_read_generation();
	if (!IS_ENABLED(PLANT_UNREG_FLAG_RACE_IN_KFUNC))
		planted_read_draining();
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
		call_maybe_null(ops, &message);
	} else {
		pr_info("No struct_ops registered\n");
	}
	trigger_read_unlock();
	call_sleepable(len);
	planted_count_end(seen);

	return count;
}

static const struct proc_ops trigger_proc_ops = {
	.proc_write = trigger_write,
};

static int __init testmod_init(void)
{
	int ret;

	ret = register_btf_kfunc_id_set(BPF_PROG_TYPE_STRUCT_OPS, &bpf_testmod_kfunc_set);
	if (ret) {
		pr_err("Failed to register the kfuncs: %d\n", ret);
		return ret;
	}

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
