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
        let log = self.take();
        match verifier_reason(&log) {
            Some(reason) => LoadFailure::Rejected {
                program: rejected_program(&log).unwrap_or("a program").to_owned(),
                reason: reason.to_owned(),
                log,
            },
            None => LoadFailure::Other {
                message: format!("{err:#}"),
                log,
            },
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        libbpf_rs::set_print(None);
    }
}

const LOG_BEGIN: &str = "-- BEGIN PROG LOAD LOG --";
const LOG_END: &str = "-- END PROG LOAD LOG --";

/// The verifier's reason for a rejection: the last line of the program's
/// load log that is not one of the closing statistics.
pub fn verifier_reason(libbpf_output: &str) -> Option<&str> {
    let start = libbpf_output.find(LOG_BEGIN)? + LOG_BEGIN.len();
    let end = libbpf_output[start..]
        .find(LOG_END)
        .map_or(libbpf_output.len(), |offset| start + offset);
    let lines: Vec<&str> = libbpf_output[start..end]
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !is_statistics_line(line))
        .collect();
    // The reason follows the last instruction the verifier looked at; newer
    // kernels add advice after it ("Use a helper allowed for this program
    // type, ..."), which is not the reason.
    match lines.iter().rposition(|line| is_instruction_line(line)) {
        Some(last) if last + 1 < lines.len() => Some(lines[last + 1]),
        _ => lines.last().copied(),
    }
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
    fn no_load_log_means_no_reason() {
        assert_eq!(
            verifier_reason("libbpf: map 'x': failed to create: -1"),
            None
        );
    }
}
