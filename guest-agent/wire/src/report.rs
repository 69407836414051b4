//! Report lines: what a loader prints about a run (counts, mostly) and a
//! scenario reads back. Each is a sentence with numbers in it, rendered and
//! parsed by the same template, so a change on one side breaks the other
//! loudly instead of drifting.

/// A report line: a sentence with numbers in it, rendered and parsed by the
/// same template so that a change on one side breaks the other loudly.
pub trait Report: Sized {
    /// The report with these numbers, in the order the line holds them;
    /// `None` if they do not fit the template.
    fn from_numbers(numbers: &[u64]) -> Option<Self>;
    /// The line the loader prints for this report.
    fn render(&self) -> String;

    /// The report in `output` (the line it renders to, exactly), if any.
    fn find_in(output: &str) -> Option<Self> {
        output.lines().find_map(|line| {
            let report = Self::from_numbers(&numbers_in(line))?;
            (report.render() == line.trim_end()).then_some(report)
        })
    }
}

fn numbers_in(line: &str) -> Vec<u64> {
    line.split(|c: char| !c.is_ascii_digit())
        .filter_map(|word| word.parse().ok())
        .collect()
}
