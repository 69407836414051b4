//! A scenario's snapshot: which file holds it (one per kernel series where
//! the scenario declares that the kernel's output differs there), and how a
//! run's normalised output compares with it. `harness run` and the VM tests
//! name and compare snapshots through this module, by insta's own rules, so
//! the two commands agree on what passes.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use harness_wire::catalogue::{ScenarioInfo, SubjectInfo};
use insta::internals::TextSnapshotContents;
use insta::TextSnapshotKind;

use crate::kernel::Series;

/// Where one scenario's snapshot lives on one kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    /// `<scenario>` or `<scenario>@<series>`: insta's snapshot name.
    pub(crate) name: String,
    /// The series suffix, when the scenario's output differs on this series.
    pub suffix: Option<String>,
    /// Why it differs there (the snapshot's description).
    pub description: Option<String>,
    /// `<subject's snapshots>/<name>.snap`.
    pub path: PathBuf,
}

impl SnapshotFile {
    /// `scenario`'s snapshot of `subject` on a kernel of `version`.
    pub fn of(subject: &SubjectInfo, scenario: &ScenarioInfo, version: &str) -> Self {
        let series = Series::parse(version).map(|series| series.to_string());
        let differs = series
            .as_deref()
            .and_then(|series| Some((series, scenario.difference_on(series)?)));
        let (name, suffix, description) = match differs {
            Some((series, why)) => (
                format!("{}@{series}", scenario.name),
                Some(series.to_owned()),
                Some(why.to_owned()),
            ),
            None => (scenario.name.clone(), None, None),
        };
        let path = subject.snapshots.join(format!("{name}.snap"));
        SnapshotFile {
            name,
            suffix,
            description,
            path,
        }
    }

    /// Where insta looks for a snapshot waiting for review: `<name>.snap.new`.
    pub(crate) fn pending(&self) -> PathBuf {
        self.path.with_extension("snap.new")
    }
}

/// How a scenario's output compared with its snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SnapshotVerdict {
    /// The output is the snapshot's.
    Matched,
    /// There was no snapshot: the output waits for review in `pending`.
    New {
        /// The `.snap.new` file written.
        pending: PathBuf,
    },
    /// The output differs from the snapshot: a unified diff, old to new;
    /// the new output waits for review in `pending`.
    Differs {
        /// `-` lines are the snapshot's, `+` lines the run's.
        diff: String,
        /// The `.snap.new` file written.
        pending: PathBuf,
    },
    /// The run was asked not to compare snapshots.
    NotCompared,
    /// The snapshot could not be read, or the output not normalised.
    Unreadable {
        /// Why, naming the file.
        error: String,
    },
}

impl SnapshotVerdict {
    /// The `.snap.new` file the output waits in, when one was written.
    pub(crate) fn pending(&self) -> Option<&std::path::Path> {
        match self {
            SnapshotVerdict::New { pending } | SnapshotVerdict::Differs { pending, .. } => {
                Some(pending)
            }
            _ => None,
        }
    }
}

impl SnapshotVerdict {
    /// Whether this verdict lets the scenario pass.
    pub(crate) fn passed(&self) -> bool {
        matches!(
            self,
            SnapshotVerdict::Matched | SnapshotVerdict::NotCompared
        )
    }

    /// `matched`, `new`, `differs` or `not_compared`, as the JSON says it.
    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            SnapshotVerdict::Matched => "matched",
            SnapshotVerdict::New { .. } => "new",
            SnapshotVerdict::Differs { .. } => "differs",
            SnapshotVerdict::NotCompared => "not_compared",
            SnapshotVerdict::Unreadable { .. } => "unreadable",
        }
    }

    /// What a person reads about a snapshot that did not match, with how to
    /// review and accept it; None when it matched or was not compared.
    pub(crate) fn explain(&self, file: &SnapshotFile) -> Option<String> {
        let review = "read it with `cargo insta review` and accept it (or reject it), \
                      or accept every pending one with `cargo insta accept` after reading them";
        match self {
            SnapshotVerdict::New { pending } => Some(format!(
                "the snapshot of {} is new ({} does not exist yet): the output waits in {}; {review}",
                file.name,
                file.path.display(),
                pending.display()
            )),
            SnapshotVerdict::Differs { diff, pending } => Some(format!(
                "the output differs from the snapshot {} (- snapshot, + this run):\n{diff}\
                 the new output waits in {}; if the change is right, {review}",
                file.path.display(),
                pending.display()
            )),
            SnapshotVerdict::Unreadable { error } => Some(error.clone()),
            SnapshotVerdict::Matched | SnapshotVerdict::NotCompared => None,
        }
    }
}

/// Compares `output` (normalised) with the snapshot in `file` by insta's
/// rules; when it is new or differs, writes it where insta expects a
/// pending one, and when it matches, removes a stale pending one.
pub(crate) fn compare(file: &SnapshotFile, output: &str) -> Result<SnapshotVerdict> {
    let new = TextSnapshotContents::new(output.to_owned(), TextSnapshotKind::File);
    let pending = file.pending();
    if !file.path.is_file() {
        write_pending(file, &new)?;
        return Ok(SnapshotVerdict::New { pending });
    }
    let stored = insta::Snapshot::from_file(&file.path)
        .map_err(|err| anyhow::anyhow!("{err}"))
        .with_context(|| {
            format!(
                "reading the snapshot {} (is it an insta snapshot? delete it to write it anew)",
                file.path.display()
            )
        })?;
    let Some(old) = stored.contents().as_text() else {
        anyhow::bail!(
            "{} is a binary snapshot; a scenario's is text",
            file.path.display()
        );
    };
    if old.matches_latest(&new) || old.matches_legacy(&new) {
        remove_stale(&pending)?;
        return Ok(SnapshotVerdict::Matched);
    }
    write_pending(file, &new)?;
    let diff = similar::TextDiff::from_lines(&old.to_string(), &new.to_string())
        .unified_diff()
        .context_radius(3)
        .header("snapshot", "this run")
        .to_string();
    Ok(SnapshotVerdict::Differs { diff, pending })
}

/// A `.snap.new` as insta writes one: its header (source, description),
/// then the normalised output.
fn write_pending(file: &SnapshotFile, new: &TextSnapshotContents) -> Result<()> {
    let mut text = String::from("---\nsource: harness run\n");
    if let Some(description) = &file.description {
        // A JSON string is a YAML double-quoted scalar.
        let quoted = serde_json::to_string(description).unwrap_or_default();
        text.push_str(&format!("description: {quoted}\n"));
    }
    text.push_str("---\n");
    text.push_str(&new.to_string());
    text.push('\n');
    let pending = file.pending();
    crate::paths::write_atomically(&pending, text.as_bytes())
        .with_context(|| format!("writing the pending snapshot {}", pending.display()))
}

fn remove_stale(pending: &Path) -> Result<()> {
    match std::fs::remove_file(pending) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            Err(err).with_context(|| format!("removing the stale {}", pending.display()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(dir: &Path) -> (SubjectInfo, ScenarioInfo) {
        let scenario = ScenarioInfo {
            name: "attach".into(),
            summary: String::new(),
            needs_module: false,
            differs_on: vec![("7.3".into(), "7.3 says it: differently".into())],
            ..ScenarioInfo::default()
        };
        let subject = SubjectInfo {
            name: "subject".into(),
            summary: String::new(),
            module: None,
            scenarios: vec![scenario.clone()],
            fragments: Vec::new(),
            snapshots: dir.to_path_buf(),
            normalise: Vec::new(),
            ..SubjectInfo::default()
        };
        (subject, scenario)
    }

    #[test]
    fn a_series_with_a_declared_difference_has_a_snapshot_of_its_own() {
        let dir = Path::new("/snapshots");
        let (subject, scenario) = subject(dir);
        let plain = SnapshotFile::of(&subject, &scenario, "6.12.117");
        assert_eq!(plain.path, dir.join("attach.snap"));
        assert_eq!(plain.pending(), dir.join("attach.snap.new"));
        let own = SnapshotFile::of(&subject, &scenario, "7.3.4");
        assert_eq!(own.path, dir.join("attach@7.3.snap"));
        assert_eq!(own.suffix.as_deref(), Some("7.3"));
    }

    #[test]
    fn new_then_matched_then_differs() {
        let dir = tempfile::tempdir().unwrap();
        let (subject, scenario) = subject(dir.path());
        let file = SnapshotFile::of(&subject, &scenario, "7.3.4");
        let output = "$ insmod m.ko\n  => ok\n";
        let SnapshotVerdict::New { pending } = compare(&file, output).unwrap() else {
            panic!("no snapshot yet: new");
        };
        // Accepting is insta's rename; its parser reads what we wrote.
        std::fs::rename(&pending, &file.path).unwrap();
        let read = insta::Snapshot::from_file(&file.path).unwrap();
        assert_eq!(
            read.metadata().description(),
            Some("7.3 says it: differently")
        );
        assert_eq!(compare(&file, output).unwrap(), SnapshotVerdict::Matched);
        // Trailing whitespace is insta's to ignore, not a difference.
        assert_eq!(
            compare(&file, "$ insmod m.ko\n  => ok\n\n").unwrap(),
            SnapshotVerdict::Matched
        );
        let verdict = compare(&file, "$ insmod m.ko\n  => -EEXIST\n").unwrap();
        let SnapshotVerdict::Differs { diff, pending } = &verdict else {
            panic!("a changed line differs: {verdict:?}");
        };
        assert!(
            diff.contains("-  => ok\n") && diff.contains("+  => -EEXIST\n"),
            "{diff}"
        );
        assert!(pending.is_file());
        assert!(!verdict.passed());
        // Matching again removes the stale pending snapshot.
        assert_eq!(compare(&file, output).unwrap(), SnapshotVerdict::Matched);
        assert!(!pending.exists());
    }
}
