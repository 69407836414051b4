//! The lines a loader prints as it walks through a contract case (attach,
//! update, a load the kernel must refuse, ...), one function each, so that
//! the scenario expecting a line builds the same text as the loader that
//! printed it.

/// `WHAT: P1 ran N1 times, P2 ran once`: each program's run count so far.
pub fn runs(what: &str, runs: &[(&str, u64)]) -> String {
    let counts: Vec<String> = runs
        .iter()
        .map(|(program, count)| match count {
            1 => format!("{program} ran once"),
            _ => format!("{program} ran {count} times"),
        })
        .collect();
    format!("{what}: {}", counts.join(", "))
}

/// `WHAT: refused: WHY` (an errno's name, or the verifier's or libbpf's words).
pub fn refused(what: &str, why: &str) -> String {
    format!("{what}: refused: {why}")
}

/// `WHAT: accepted`: what a case expected to be refused, it prints this instead.
pub fn accepted(what: &str) -> String {
    format!("{what}: accepted")
}

/// `WHAT: done`.
pub fn done(what: &str) -> String {
    format!("{what}: done")
}

/// `WHAT: the link's fd reports POLLHUP` (or `no POLLHUP`).
pub fn polled(what: &str, hung_up: bool) -> String {
    let polled = if hung_up { "POLLHUP" } else { "no POLLHUP" };
    format!("{what}: the link's fd reports {polled}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_as_sentences() {
        assert_eq!(
            runs("after the update", &[("a", 2), ("b", 0), ("c", 1)]),
            "after the update: a ran 2 times, b ran 0 times, c ran once"
        );
        assert_eq!(refused("attach", "EINVAL"), "attach: refused: EINVAL");
        assert_eq!(accepted("load"), "load: accepted");
        assert_eq!(done("replace"), "replace: done");
        assert_eq!(
            polled("detached", true),
            "detached: the link's fd reports POLLHUP"
        );
    }
}
