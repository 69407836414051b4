//! Running make in a kernel tree: output into a separate directory, every
//! line into the build log, kbuild's step lines into the progress display.

use std::path::Path;

use anyhow::{bail, Context, Result};

use super::KernelBuildError;
use crate::progress::Progress;

/// make in a source tree with a separate output directory, logging everything.
pub struct Make<'a> {
    pub(super) source_dir: &'a Path,
    pub(super) build_dir: &'a Path,
    log: &'a Path,
    environment: &'a [(&'a str, &'a str)],
}

impl<'a> Make<'a> {
    /// make in `source_dir` with `O=build_dir`, its output appended to `log`.
    pub fn new(source_dir: &'a Path, build_dir: &'a Path, log: &'a Path) -> Self {
        Make {
            source_dir,
            build_dir,
            log,
            environment: &[],
        }
    }

    /// make with these variables in its environment as well (see
    /// `KernelRecipe::make_environment`).
    pub(super) fn with_environment(self, environment: &'a [(&'a str, &'a str)]) -> Self {
        Make {
            environment,
            ..self
        }
    }
}

impl Make<'_> {
    pub(super) fn run(&self, args: &[&str], progress: &Progress) -> Result<()> {
        let target = args.last().copied().unwrap_or("");
        let mut make_args = vec![
            "-C".to_owned(),
            self.source_dir.display().to_string(),
            format!("O={}", self.build_dir.display()),
        ];
        make_args.extend(args.iter().map(|arg| (*arg).to_owned()));
        let task = progress.task(format!("make {target}"));
        let command = (self.environment.iter())
            .fold(duct::cmd("make", make_args), |command, (name, value)| {
                command.env(name, value)
            });
        let result = self.stream(&format!("make {target}"), command, |line| {
            if let Some(activity) = kbuild_activity(line) {
                task.update(activity);
            }
        });
        match &result {
            Ok(()) => task.finish("done"),
            Err(_) => task.finish("failed"),
        }
        result
    }

    pub(super) fn run_logged(&self, what: &str, command: duct::Expression) -> Result<()> {
        self.stream(what, command, |_| {})
    }

    /// Runs `command`, appending its output to the log and passing each line to `on_line`.
    fn stream(
        &self,
        what: &str,
        command: duct::Expression,
        mut on_line: impl FnMut(&str),
    ) -> Result<()> {
        use std::io::{BufRead, BufReader, Write};
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        writeln!(log, "### {what}")?;
        let reader = command
            .stderr_to_stdout()
            .unchecked()
            .reader()
            .with_context(|| format!("starting {what} (is make installed? run `harness setup`)"))?;
        let mut lines = BufReader::new(&reader);
        let mut line = String::new();
        loop {
            line.clear();
            if lines
                .read_line(&mut line)
                .with_context(|| format!("reading the output of {what}"))?
                == 0
            {
                break;
            }
            log.write_all(line.as_bytes())?;
            on_line(line.trim_end());
        }
        let output = reader
            .try_wait()?
            .context("the command ended without a status")?;
        if !output.status.success() {
            bail!(KernelBuildError::Make {
                target: what.trim_start_matches("make ").to_owned(),
                code: output.status.code().unwrap_or(-1),
                log: self.log.display().to_string(),
                tail: crate::text::tail_of_file(self.log, 25),
            });
        }
        Ok(())
    }
}

/// The kbuild step a line of make output announces (`CC      kernel/fork.o`), or None.
fn kbuild_activity(line: &str) -> Option<&str> {
    let line = line.trim_start();
    let (verb, _) = line.split_once(' ')?;
    (!verb.is_empty()
        && verb.len() <= 8
        && verb
            .chars()
            .all(|c| c.is_ascii_uppercase() || c == '-' || c == '_' || c.is_ascii_digit())
        && line.len() > verb.len() + 1)
        .then_some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kbuild_lines_are_progress_other_lines_are_not() {
        assert_eq!(
            kbuild_activity("  CC      kernel/fork.o"),
            Some("CC      kernel/fork.o")
        );
        assert_eq!(
            kbuild_activity("  BTF     .btf.vmlinux.bin.o"),
            Some("BTF     .btf.vmlinux.bin.o")
        );
        assert_eq!(kbuild_activity("make[1]: Entering directory '/x'"), None);
        assert_eq!(kbuild_activity("#"), None);
    }
}
