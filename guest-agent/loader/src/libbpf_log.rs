//! Captures what libbpf prints while a load runs, so that a verifier
//! rejection reaches the user as a reason rather than as a bare errno.

use std::sync::Mutex;

use libbpf_rs::PrintLevel;

/// Why libbpf could not open or load an object, before any subject gives
/// it a meaning of its own: each subject's `LoadError` wraps it.
#[derive(Debug, thiserror::Error)]
pub enum LoadFailure {
    /// The verifier refused `program`.
    #[error("the verifier rejected {program}: {reason}")]
    Rejected {
        /// The program libbpf named.
        program: String,
        /// The verifier's verdict (the line after the last instruction it looked at).
        reason: String,
        /// All libbpf printed.
        log: String,
    },
    /// Anything else.
    #[error("loading the BPF object failed: {message}\n{log}")]
    Other {
        /// libbpf's error.
        message: String,
        /// All libbpf printed.
        log: String,
    },
}

static CAPTURED: Mutex<String> = Mutex::new(String::new());

fn record(_level: PrintLevel, message: String) {
    if let Ok(mut captured) = CAPTURED.lock() {
        captured.push_str(&message);
    }
}

/// Routes libbpf's messages into a buffer until dropped.
pub struct Capture;

impl Capture {
    /// Starts capturing; libbpf prints to stderr again once this is dropped.
    pub fn start() -> Self {
        if let Ok(mut captured) = CAPTURED.lock() {
            captured.clear();
        }
        libbpf_rs::set_print(Some((PrintLevel::Warn, record)));
        Capture
    }

    fn take(&self) -> String {
        CAPTURED
            .lock()
            .map(|mut captured| std::mem::take(&mut *captured))
            .unwrap_or_default()
    }

    /// What went wrong with a load that failed with `err`, with the verifier's reason if it gave one.
    pub fn load_error(&self, err: &libbpf_rs::Error) -> LoadFailure {
        failure_of(self.take(), err)
    }
}

/// The failure libbpf's output `log` tells of: a verifier rejection with its
/// reason, one with only an errno (the instruction it stopped at is then the
/// reason), or anything else, with `err`.
pub(crate) fn failure_of(log: String, err: &libbpf_rs::Error) -> LoadFailure {
    if let Some(reason) = verifier_reason(&log) {
        return LoadFailure::Rejected {
            program: rejected_program(&log).unwrap_or("a program").to_owned(),
            reason: reason.to_owned(),
            log,
        };
    }
    match bare_refusal(&log) {
        Some(bare) => LoadFailure::Rejected {
            reason: bare.describe(),
            program: bare.program,
            log,
        },
        None => LoadFailure::Other {
            message: format!("{err:#}"),
            log,
        },
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        libbpf_rs::set_print(None);
    }
}

const LOG_BEGIN: &str = "-- BEGIN PROG LOAD LOG --";
const LOG_END: &str = "-- END PROG LOAD LOG --";

/// The verifier's reason for a rejection: the line after the last
/// instruction it looked at, in the program's load log. None when the log
/// says nothing after that instruction (a refusal with only an errno, see
/// [`bare_refusal`]) or there is no load log.
pub fn verifier_reason(libbpf_output: &str) -> Option<&str> {
    let lines = load_log_lines(libbpf_output)?;
    // The reason follows the last instruction the verifier looked at; newer
    // kernels add advice after it ("Use a helper allowed for this program
    // type, ..."), which is not the reason.
    match lines.iter().rposition(|line| is_instruction_line(line)) {
        Some(last) => lines.get(last + 1).copied(),
        None => lines.last().copied(),
    }
}

/// A refusal the verifier gave as an errno alone: the program's load log
/// ends at the instruction it refused, with no words after it. Some kernel
/// callbacks refuse that way (sched_ext's refusal of a write to a kernel
/// struct's field returns -EACCES and prints nothing), so the instruction
/// and the errno are all there is to go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BareRefusal {
    /// The program libbpf named.
    pub program: String,
    /// The errno as libbpf printed it (`-EACCES`; older libbpf: `Permission denied`).
    pub errno: String,
    /// The instruction the verifier stopped at, without its index
    /// (`*(u32 *)(r1 +748) = r2`).
    pub instruction: String,
}

impl BareRefusal {
    /// What can be said of it without knowing the program's type.
    pub fn describe(&self) -> String {
        format!(
            "refused with {} and no message, at `{}`",
            self.errno, self.instruction
        )
    }

    /// Whether the refused instruction stores to memory (`*(u32 *)(r1 +8) = r2`).
    pub fn is_store(&self) -> bool {
        self.instruction.starts_with("*(") && self.instruction.contains(") = ")
    }
}

/// The refusal in libbpf's output when the verifier gave no reason: see [`BareRefusal`].
pub fn bare_refusal(libbpf_output: &str) -> Option<BareRefusal> {
    let lines = load_log_lines(libbpf_output)?;
    let last = *lines.last()?;
    // Anything after the last instruction would be the verifier's reason.
    if !is_instruction_line(last) {
        return None;
    }
    let (_, instruction) = last.split_once(": ")?;
    // The verifier prints the instruction with its opcode first: `(62) *(u32 *)...`.
    let instruction = match instruction.split_once(") ") {
        Some((opcode, rest)) if opcode.starts_with('(') => rest,
        _ => instruction,
    };
    let failed = libbpf_output
        .lines()
        .find(|line| line.contains(LOAD_FAILED))?;
    let errno = failed[failed.find(LOAD_FAILED)? + LOAD_FAILED.len()..].trim();
    Some(BareRefusal {
        program: rejected_program(libbpf_output)?.to_owned(),
        errno: errno.to_owned(),
        instruction: instruction.trim().to_owned(),
    })
}

/// What libbpf prints before the errno of a program the kernel refused.
const LOAD_FAILED: &str = "BPF program load failed: ";

/// The lines of the program's load log, trimmed, without blank lines and
/// the closing statistics; None when there is no load log.
fn load_log_lines(libbpf_output: &str) -> Option<Vec<&str>> {
    let start = libbpf_output.find(LOG_BEGIN)? + LOG_BEGIN.len();
    let end = libbpf_output[start..]
        .find(LOG_END)
        .map_or(libbpf_output.len(), |offset| start + offset);
    let lines = libbpf_output[start..end]
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !is_statistics_line(line))
        .collect();
    Some(lines)
}

/// `0: (85) call bpf_get_current_comm#16`, `0: R1=ctx() R10=fp0`, a source
/// line (`; x = y; @ file.c:19`) or a branch (`from 4 to 6: ...`): the
/// verifier's walk, not its verdict.
fn is_instruction_line(line: &str) -> bool {
    let numbered = line
        .split_once(':')
        .is_some_and(|(index, _)| !index.is_empty() && index.chars().all(|c| c.is_ascii_digit()));
    numbered || line.starts_with("; ") || line.starts_with("from ")
}

fn is_statistics_line(line: &str) -> bool {
    line.starts_with("processed ")
        || line.starts_with("verification time")
        || line.starts_with("stack depth")
}

/// The program name libbpf names in "prog 'NAME': BPF program load failed".
fn rejected_program(libbpf_output: &str) -> Option<&str> {
    let line = libbpf_output
        .lines()
        .find(|line| line.contains("BPF program load failed"))?;
    let start = line.find("prog '")? + "prog '".len();
    let len = line[start..].find('\'')?;
    Some(&line[start..start + len])
}

/// libbpf 1.7 loading a sched_ext scheduler whose ops.enqueue writes
/// p->scx.weight, on 6.12.118 (captured from the scaffold's
/// verifier_reject): the verifier stops at the store and says nothing
/// (bpf_scx_btf_struct_access returns -EACCES silently).
#[cfg(test)]
pub(crate) const BARE_EACCES: &str = "\
libbpf: prog 'rejected_enqueue': BPF program load failed: -EACCES
libbpf: prog 'rejected_enqueue': -- BEGIN PROG LOAD LOG --
Global function rejected_enqueue() doesn't return scalar. Only those are supported.
0: R1=ctx() R10=fp0
; void BPF_STRUCT_OPS(rejected_enqueue, struct task_struct *p, u64 enq_flags) @ rejected.bpf.c:16
0: (79) r1 = *(u64 *)(r1 +0)
func 'enqueue' arg0 has btf_id 62 type STRUCT 'task_struct'
1: R1_w=trusted_ptr_task_struct()
1: (b4) w2 = 1                        ; R2_w=1
; p->scx.weight = 1; @ rejected.bpf.c:18
2: (63) *(u32 *)(r1 +748) = r2
processed 3 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0
-- END PROG LOAD LOG --
libbpf: prog 'rejected_enqueue': failed to load: -EACCES
libbpf: failed to load object 'rejected'
";

#[cfg(test)]
mod tests {
    use super::*;

    const HELPER_REJECTION: &str = "\
libbpf: prog 'rejected_test_1': BPF program load failed: Invalid argument
libbpf: prog 'rejected_test_1': -- BEGIN PROG LOAD LOG --
0: R1=ctx() R10=fp0
; bpf_get_current_comm(comm, sizeof(comm)); @ rejected.bpf.c:19
0: (85) call bpf_get_current_comm#16
program of this type cannot use helper bpf_get_current_comm#16
processed 1 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0
-- END PROG LOAD LOG --
libbpf: prog 'rejected_test_1': failed to load: -22
";

    #[test]
    fn reason_is_the_last_verifier_line_before_the_statistics() {
        assert_eq!(
            verifier_reason(HELPER_REJECTION),
            Some("program of this type cannot use helper bpf_get_current_comm#16")
        );
    }

    #[test]
    fn advice_after_the_reason_is_not_the_reason() {
        // 7.x adds a line of advice after the verdict.
        let with_advice = HELPER_REJECTION.replace(
            "program of this type cannot use helper bpf_get_current_comm#16\n",
            "program of this type cannot use helper bpf_get_current_comm#16\n\
             Use a helper allowed for this program type, or move the logic to a compatible program type.\n",
        );
        assert_eq!(
            verifier_reason(&with_advice),
            Some("program of this type cannot use helper bpf_get_current_comm#16")
        );
    }

    #[test]
    fn program_name_comes_from_the_load_failure_line() {
        assert_eq!(rejected_program(HELPER_REJECTION), Some("rejected_test_1"));
    }

    #[test]
    fn a_refusal_with_only_an_errno_has_no_reason_but_its_instruction() {
        assert_eq!(verifier_reason(BARE_EACCES), None);
        let bare = bare_refusal(BARE_EACCES).unwrap();
        assert_eq!(
            bare,
            BareRefusal {
                program: "rejected_enqueue".into(),
                errno: "-EACCES".into(),
                instruction: "*(u32 *)(r1 +748) = r2".into(),
            }
        );
        assert!(bare.is_store());
        assert_eq!(
            bare.describe(),
            "refused with -EACCES and no message, at `*(u32 *)(r1 +748) = r2`"
        );
        let err = libbpf_rs::Error::from_raw_os_error(libc::EACCES);
        match failure_of(BARE_EACCES.to_owned(), &err) {
            LoadFailure::Rejected {
                program, reason, ..
            } => assert_eq!(
                (program.as_str(), reason),
                ("rejected_enqueue", bare.describe())
            ),
            other => panic!("not a rejection: {other:?}"),
        }
    }

    #[test]
    fn a_refusal_with_a_reason_is_not_bare() {
        assert_eq!(bare_refusal(HELPER_REJECTION), None);
        assert_eq!(bare_refusal("libbpf: map 'x': failed to create: -1"), None);
    }

    #[test]
    fn no_load_log_means_no_reason() {
        assert_eq!(
            verifier_reason("libbpf: map 'x': failed to create: -1"),
            None
        );
    }
}
