//! A subject in a directory outside this workspace, as a user's repository
//! would hold one: its own crate (the harness as a path dependency), its own
//! module (with a header in a subdirectory), its scenario written against
//! `Context`, and its snapshots. Its tests run with `cargo test` there, with
//! no edit to this repository; this test checks what they printed, the
//! snapshot they wrote, and that `--list` names the scenario.

mod common;

use common::{cargo_test, write, write_subject_crate};

const LIB: &str = r#"use std::path::Path;

use harness::{Context, ModuleSpec, Outcome, Scenario, Source, Subject};

fn greet(context: &mut Context) -> anyhow::Result<()> {
    let step = context.write_file(Path::new("/proc/outside_hello"), "from outside")?;
    context.expect_outcome(step, Outcome::Ok);
    context.expect_line(step, Source::Kernel, "greeting: from outside");
    Ok(())
}

pub const SUBJECT: Subject = Subject::new("outside", "a subject from outside", env!("CARGO_MANIFEST_DIR"))
    .module(
        ModuleSpec::new("outside_hello", "kmod/outside_hello")
            .loaded_line("outside_hello loaded")
            .unloaded_line("outside_hello unloaded"),
    )
    .scenarios(&[Scenario::new("greet", "a write to its proc file is greeted", greet).with_module()]);
"#;

const MODULE: &str = r#"#include <linux/module.h>
#include <linux/proc_fs.h>
#include <linux/uaccess.h>
#include "include/greeting.h"

static struct proc_dir_entry *entry;

static ssize_t hello_write(struct file *file, const char __user *buf, size_t count, loff_t *pos)
{
	char text[32];
	size_t len = min(count, sizeof(text) - 1);

	if (copy_from_user(text, buf, len))
		return -EFAULT;
	text[len] = '\0';
	pr_info(GREETING "%s\n", text);
	return count;
}

static const struct proc_ops hello_ops = { .proc_write = hello_write };

static int __init hello_init(void)
{
	entry = proc_create("outside_hello", 0222, NULL, &hello_ops);
	if (!entry)
		return -ENOMEM;
	pr_info("outside_hello loaded\n");
	return 0;
}

static void __exit hello_exit(void)
{
	proc_remove(entry);
	pr_info("outside_hello unloaded\n");
}

module_init(hello_init);
module_exit(hello_exit);
MODULE_LICENSE("GPL");
"#;

const SNAPSHOT: &str = "\
$ insmod outside_hello.ko
  => ok
  [kernel] outside_hello loaded
$ echo -n 'from outside' > /proc/outside_hello
  => ok
  [kernel] greeting: from outside
$ rmmod outside_hello (retried for up to 10 s)
  => ok
  [kernel] outside_hello unloaded
";

#[test]
fn a_subject_outside_the_workspace_runs_with_no_edit_here() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("outside");
    write_subject_crate(&dir, "outside-subject", LIB);
    write(
        &dir,
        "kmod/outside_hello/Kbuild",
        "obj-m += outside_hello.o\nccflags-y := -g\n",
    );
    write(&dir, "kmod/outside_hello/outside_hello.c", MODULE);
    write(
        &dir,
        "kmod/outside_hello/include/greeting.h",
        "#define GREETING \"greeting: \"\n",
    );
    let (_, before) = common::git_status();
    let (listed, list) = cargo_test(&dir, &["--list"]);
    assert!(listed && list.contains("greet: test"), "{list}");
    let (passed, output) = cargo_test(&dir, &[]);
    assert!(passed, "{output}");
    let snapshot = std::fs::read_to_string(dir.join("tests/snapshots/greet.snap")).unwrap();
    let body = snapshot.splitn(3, "---\n").nth(2).unwrap_or_default();
    assert_eq!(body, SNAPSHOT, "the snapshot it wrote:\n{snapshot}");
    // This repository is untouched: nothing was written into it but target/.
    let (_, after) = common::git_status();
    assert_eq!(before, after, "this repository changed");
}
