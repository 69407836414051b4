//! What a loader says about the BPF programs it loaded: each one's name,
//! how many instructions the verifier processed to accept it, and how many
//! times it ran (with the kernel's BPF stats on, as the agent turns them on
//! for a scenario). The loader writes one line each to stderr; the agent
//! takes those lines out of the step's stderr and keeps them as data.

use serde::{Deserialize, Serialize};

/// Starts every program line.
pub(crate) const PROGRAM_LINE: &str = "harness-program:";

/// One loaded program, as its loader last saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramStats {
    /// The program's name (its function's, in the BPF object).
    pub name: String,
    /// Instructions the verifier processed to accept it (`verified_insns`).
    pub verified_insns: u64,
    /// Times it ran (`run_cnt`; counted only while BPF stats are on).
    pub run_cnt: u64,
    /// The object it came from (`scx_simple`): two objects may each have
    /// a program of the same name.
    #[serde(default)]
    pub object: String,
}

impl ProgramStats {
    /// `harness-program: NAME verified_insns=N run_cnt=M object=OBJECT`.
    pub fn render(&self) -> String {
        format!(
            "{PROGRAM_LINE} {} verified_insns={} run_cnt={} object={}",
            self.name, self.verified_insns, self.run_cnt, self.object
        )
    }

    /// `object/name`, or the name alone when the object is not known.
    pub fn qualified_name(&self) -> String {
        match self.object.is_empty() {
            true => self.name.clone(),
            false => format!("{}/{}", self.object, self.name),
        }
    }

    /// The stats a line renders, if it is a program line.
    pub fn parse(line: &str) -> Option<Self> {
        let mut words = line.strip_prefix(PROGRAM_LINE)?.split_whitespace();
        let name = words.next()?.to_owned();
        let verified_insns = words
            .next()?
            .strip_prefix("verified_insns=")?
            .parse()
            .ok()?;
        let run_cnt = words.next()?.strip_prefix("run_cnt=")?.parse().ok()?;
        let object = (words.next())
            .and_then(|word| word.strip_prefix("object="))
            .unwrap_or("")
            .to_owned();
        Some(ProgramStats {
            name,
            verified_insns,
            run_cnt,
            object,
        })
    }
}

/// `stderr` without its program lines, and the stats they held.
pub fn take_program_lines(stderr: &str) -> (String, Vec<ProgramStats>) {
    let mut rest = String::new();
    let mut programs = Vec::new();
    for line in stderr.lines() {
        match ProgramStats::parse(line) {
            Some(stats) => programs.push(stats),
            None => {
                rest.push_str(line);
                rest.push('\n');
            }
        }
    }
    (rest, programs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_line_round_trips_and_leaves_the_rest_alone() {
        let stats = ProgramStats {
            name: "demo_op_1".into(),
            verified_insns: 12,
            run_cnt: 3,
            object: "demo".into(),
        };
        assert_eq!(ProgramStats::parse(&stats.render()), Some(stats.clone()));
        let stderr = format!("before\n{}\nafter\n", stats.render());
        assert_eq!(
            take_program_lines(&stderr),
            ("before\nafter\n".to_owned(), vec![stats])
        );
        assert_eq!(take_program_lines(""), (String::new(), Vec::new()));
    }
}
