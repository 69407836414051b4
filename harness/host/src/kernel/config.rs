//! Kernel config fragments: which apply to a kernel, parsing them, and
//! checking that every option they ask for survived `olddefconfig` (which
//! silently drops an option whose dependencies are missing).
//!
//! Every core fragment (`harness/host/images/*.config`) and every fragment a
//! subject declares applies to every kernel, except that a fragment
//! named after a flavour (`debug.config`) applies only to that flavour, and
//! one whose text holds a `# kernel: < 7.0` (or `>=`) line applies only to
//! the kernel series it names.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// One `CONFIG_X=value` or `# CONFIG_X is not set` line of a fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Requested {
    /// `CONFIG_X`.
    pub(crate) option: String,
    /// `None` for "is not set".
    pub(crate) value: Option<String>,
    /// `file:line`, to point the user at the request.
    pub(crate) origin: String,
}

/// A fragment file and its text.
#[derive(Debug, Clone)]
pub struct Fragment {
    /// Where it was read from; its file name decides which flavour it is for.
    pub(crate) path: PathBuf,
    /// Its `CONFIG_X=value` lines and comments.
    pub(crate) text: String,
}

/// A kernel built with extra checking on top of the default fragments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavour {
    /// The default fragments only.
    #[default]
    Default,
    /// `harness/host/images/debug.config` on top: KASAN, KFENCE, lockdep,
    /// RCU and sleep checks, UBSAN, kmemleak.
    Debug,
    /// `harness/host/images/race.config` on top: KCSAN, which cannot share
    /// a kernel with KASAN.
    Race,
}

impl Flavour {
    /// Every flavour with a fragment of its own.
    pub(crate) const CHECKING: [Flavour; 2] = [Flavour::Debug, Flavour::Race];

    /// The flavour asked for (`--debug-kernel`, `--race-kernel`); the
    /// debug one if both are.
    pub fn choose(debug: bool, race: bool) -> Self {
        if debug {
            Flavour::Debug
        } else if race {
            Flavour::Race
        } else {
            Flavour::Default
        }
    }

    /// The fragment only this flavour applies.
    fn fragment(self) -> Option<&'static str> {
        match self {
            Flavour::Default => None,
            Flavour::Debug => Some("debug.config"),
            Flavour::Race => Some("race.config"),
        }
    }

    /// `default`, `debug` or `race`, as reports and the cache list name it.
    pub fn name(self) -> &'static str {
        match self {
            Flavour::Default => "default",
            Flavour::Debug => "debug",
            Flavour::Race => "race",
        }
    }

    /// The option that asks for this flavour, for a command to rerun.
    pub(crate) fn option(self) -> Option<&'static str> {
        match self {
            Flavour::Default => None,
            Flavour::Debug => Some("--debug-kernel"),
            Flavour::Race => Some("--race-kernel"),
        }
    }
}

impl std::fmt::Display for Flavour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A kernel series, `6.12`: what fragments are conditioned on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Series {
    /// The `6` of `6.12`.
    pub(crate) major: u32,
    /// The `12` of `6.12`.
    pub(crate) minor: u32,
}

impl Series {
    /// `6.12` from `6.12`, `6.12.117` or `7.3.4-rc1`.
    pub fn parse(version: &str) -> Option<Self> {
        let mut parts = version.split(|c: char| !c.is_ascii_digit());
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(Series { major, minor })
    }
}

impl std::fmt::Display for Series {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// A fragment that cannot be read as one, found before any build starts.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum FragmentError {
    /// A line that is neither an option, an unset option nor a comment.
    #[error("{origin}: not a kernel config line: `{line}` (expected CONFIG_NAME=value or `# CONFIG_NAME is not set`)")]
    Syntax {
        /// `file:line` of the line.
        origin: String,
        /// The line, trimmed.
        line: String,
    },
    /// A `# kernel:` line that is not `< X.Y` or `>= X.Y`.
    #[error("{origin}: `{line}` is not a kernel condition (expected `# kernel: < 7.0` or `# kernel: >= 7.0`)")]
    Condition {
        /// `file:line` of the line.
        origin: String,
        /// The line, trimmed.
        line: String,
    },
}

/// The fragments every kernel is built from, inside this crate so that the
/// harness needs no checkout of its own sources: what struct_ops, the VM,
/// the checks, stepping in and vng need, and the flavours' own.
const CORE_FRAGMENTS: &[(&str, &str)] = &[
    ("bpf.config", include_str!("../../images/bpf.config")),
    ("checks.config", include_str!("../../images/checks.config")),
    ("debug.config", include_str!("../../images/debug.config")),
    ("race.config", include_str!("../../images/race.config")),
    (
        "programs.config",
        include_str!("../../images/programs.config"),
    ),
    (
        "debugging.config",
        include_str!("../../images/debugging.config"),
    ),
    (
        "sched_debug.config",
        include_str!("../../images/sched_debug.config"),
    ),
    (
        "sched_ext.config",
        include_str!("../../images/sched_ext.config"),
    ),
    (
        "sched_ext_cgroup.config",
        include_str!("../../images/sched_ext_cgroup.config"),
    ),
    ("sysctl.config", include_str!("../../images/sysctl.config")),
    ("tcp.config", include_str!("../../images/tcp.config")),
    (
        "topology.config",
        include_str!("../../images/topology.config"),
    ),
    ("vm.config", include_str!("../../images/vm.config")),
    ("vng.config", include_str!("../../images/vng.config")),
];

/// The core's fragments that give the default kernel the struct_ops types
/// its series defines (sched_ext's, netem for congestion controls), what
/// common BPF programs need at load, and NUMA for a scheduler's topology,
/// so that no subject of those types builds a kernel of its own.
/// `harness bench --cold-kernel` builds the kernel without them too, to say
/// what they cost.
pub(crate) const TYPE_FRAGMENTS: &[&str] = &[
    "programs.config",
    "sched_debug.config",
    "sched_ext.config",
    "sched_ext_cgroup.config",
    "tcp.config",
    "topology.config",
];

/// The core's fragments, named as they are in the harness's sources.
pub fn core_fragments() -> Vec<Fragment> {
    CORE_FRAGMENTS
        .iter()
        .map(|(name, text)| Fragment {
            path: Path::new("harness/host/images").join(name),
            text: (*text).to_owned(),
        })
        .collect()
}

/// The fragments a subject adds, each read from its file.
pub(crate) fn read_fragment_files(paths: &[PathBuf]) -> Result<Vec<Fragment>> {
    paths
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path).with_context(|| {
                format!("reading the kernel config fragment {}", path.display())
            })?;
            Ok(Fragment {
                path: path.clone(),
                text,
            })
        })
        .collect()
}

/// The fragments that apply to `flavour` on a kernel of `series`.
pub fn select_fragments(
    all: &[Fragment],
    flavour: Flavour,
    series: Series,
) -> Result<Vec<Fragment>, FragmentError> {
    let flavour_fragments = Flavour::CHECKING.map(|other| other.fragment());
    let mut selected = Vec::new();
    for fragment in all {
        let name = fragment.path.file_name().and_then(|name| name.to_str());
        if flavour_fragments.contains(&name) && name != flavour.fragment() {
            continue;
        }
        if fragment.applies_to(series)? {
            selected.push(fragment.clone());
        }
    }
    Ok(selected)
}

impl Fragment {
    /// A fragment of this text, as if read from `path` (whose file name
    /// decides which flavour it is for).
    pub fn new(path: PathBuf, text: String) -> Self {
        Fragment { path, text }
    }

    /// Whether this fragment's `# kernel:` condition, if any, holds for `series`.
    pub(crate) fn applies_to(&self, series: Series) -> Result<bool, FragmentError> {
        for (index, line) in self.text.lines().enumerate() {
            let Some(condition) = line.trim().strip_prefix("# kernel:") else {
                continue;
            };
            let bad = || FragmentError::Condition {
                origin: format!("{}:{}", self.origin_name(), index + 1),
                line: line.trim().to_owned(),
            };
            let condition = condition.trim();
            let (holds, bound): (fn(Series, Series) -> bool, &str) =
                if let Some(bound) = condition.strip_prefix(">=") {
                    (|series, bound| series >= bound, bound)
                } else if let Some(bound) = condition.strip_prefix('<') {
                    (|series, bound| series < bound, bound)
                } else {
                    return Err(bad());
                };
            let bound = Series::parse(bound.trim()).ok_or_else(bad)?;
            return Ok(holds(series, bound));
        }
        Ok(true)
    }

    /// `images/name.config` for a fragment read from a directory of them
    /// (the test's), its path otherwise, as messages name a fragment.
    fn origin_name(&self) -> String {
        let in_images = self
            .path
            .parent()
            .is_some_and(|dir| dir.ends_with("images") && dir.is_absolute());
        match (in_images, self.path.file_name()) {
            (true, Some(name)) => format!("images/{}", name.to_string_lossy()),
            _ => self.path.display().to_string(),
        }
    }
}

/// How many of `wanted` a kernel's `.config` text does not have as asked.
pub(crate) fn differing(config: &str, wanted: &[Requested]) -> usize {
    let set: std::collections::BTreeMap<&str, &str> = config
        .lines()
        .filter_map(|line| line.split_once('='))
        .collect();
    wanted
        .iter()
        .filter(|requested| {
            let has = set.get(requested.option.as_str()).copied();
            match requested.value.as_deref() {
                // "is not set" holds for an option the .config leaves out.
                None => has.is_some_and(|value| value != "n"),
                Some(value) => has != Some(value),
            }
        })
        .count()
}

/// Every option the fragments ask for. A later fragment overrides an earlier one.
pub(crate) fn requested_options(fragments: &[Fragment]) -> Result<Vec<Requested>, FragmentError> {
    let mut by_option: BTreeMap<String, Requested> = BTreeMap::new();
    for fragment in fragments {
        let name = fragment.origin_name();
        for (index, line) in fragment.text.lines().enumerate() {
            let origin = format!("{name}:{}", index + 1);
            if let Some(requested) = parse_line(line, &origin)? {
                by_option.insert(requested.option.clone(), requested);
            }
        }
    }
    Ok(by_option.into_values().collect())
}

fn parse_line(line: &str, origin: &str) -> Result<Option<Requested>, FragmentError> {
    let trimmed = line.trim();
    let syntax = || FragmentError::Syntax {
        origin: origin.to_owned(),
        line: trimmed.to_owned(),
    };
    if trimmed.is_empty() {
        return Ok(None);
    }
    if let Some(comment) = trimmed.strip_prefix('#') {
        let comment = comment.trim();
        if comment.starts_with("kernel:") {
            // A condition on the kernel series, read by `Fragment::applies_to`.
            return Ok(None);
        }
        if let Some(option) = comment.strip_suffix(" is not set") {
            if is_option_name(option) {
                return Ok(Some(Requested {
                    option: option.to_owned(),
                    value: None,
                    origin: origin.to_owned(),
                }));
            }
            return Err(syntax());
        }
        return Ok(None);
    }
    let (option, value) = trimmed.split_once('=').ok_or_else(syntax)?;
    if !is_option_name(option) || value.is_empty() {
        return Err(syntax());
    }
    Ok(Some(Requested {
        option: option.to_owned(),
        value: Some(value.to_owned()),
        origin: origin.to_owned(),
    }))
}

fn is_option_name(name: &str) -> bool {
    name.strip_prefix("CONFIG_").is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    })
}

/// An option the final .config does not have as the fragment asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Dropped {
    /// What the fragment asked for, and where.
    pub(crate) requested: Requested,
    /// What the final config says instead: `is not set`, `=m`, ...
    pub(crate) actual: String,
}

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let wanted = match &self.requested.value {
            Some(value) => format!("{}={value}", self.requested.option),
            None => format!("{} unset", self.requested.option),
        };
        write!(
            f,
            "{wanted} ({}), but the final .config has {}",
            self.requested.origin, self.actual
        )
    }
}

/// The requested options that the final `.config` text does not honour.
pub(crate) fn dropped_options(requested: &[Requested], final_config: &str) -> Vec<Dropped> {
    let mut actual: BTreeMap<&str, &str> = BTreeMap::new();
    for line in final_config.lines() {
        if let Some((option, value)) = line.split_once('=') {
            actual.insert(option, value);
        }
    }
    requested
        .iter()
        .filter_map(|request| {
            let now = actual.get(request.option.as_str()).copied();
            let honoured = match (&request.value, now) {
                (None, None) => true,
                (None, Some("n")) => true,
                (Some(wanted), Some(now)) => wanted == now,
                (Some(wanted), None) => wanted == "n",
                (None, Some(_)) => false,
            };
            (!honoured).then(|| Dropped {
                requested: request.clone(),
                actual: match now {
                    Some(value) => format!("{}={value}", request.option),
                    None => "it not set (a dependency is missing, or the option does not exist in this kernel)".to_owned(),
                },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fragment(name: &str, text: &str) -> Fragment {
        Fragment {
            path: PathBuf::from(format!("/x/images/{name}")),
            text: text.to_owned(),
        }
    }

    #[test]
    fn a_config_differs_by_the_options_it_does_not_have_as_asked() {
        let wanted = requested_options(&[Fragment {
            path: PathBuf::from("x.config"),
            text: "CONFIG_A=y\nCONFIG_B=y\n# CONFIG_C is not set\nCONFIG_D=\"x\"\n".into(),
        }])
        .unwrap();
        let config = "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_D=\"x\"\n";
        assert_eq!(differing(config, &wanted), 1);
        assert_eq!(differing("CONFIG_C=y\n", &wanted), 4);
    }

    #[test]
    fn parses_set_unset_and_comments() {
        let requested = requested_options(&[fragment(
            "a.config",
            "# a comment\nCONFIG_BPF=y\n\n# CONFIG_USB is not set\nCONFIG_LOG_BUF_SHIFT=17\n",
        )])
        .unwrap();
        let summary: Vec<_> = requested
            .iter()
            .map(|r| format!("{}={:?}@{}", r.option, r.value, r.origin))
            .collect();
        assert_eq!(
            summary,
            [
                "CONFIG_BPF=Some(\"y\")@images/a.config:2",
                "CONFIG_LOG_BUF_SHIFT=Some(\"17\")@images/a.config:5",
                "CONFIG_USB=None@images/a.config:4",
            ]
        );
    }

    #[test]
    fn a_syntax_error_names_file_and_line() {
        let err = requested_options(&[fragment("bad.config", "CONFIG_BPF=y\nBPF_SYSCALL=y\n")])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "images/bad.config:2: not a kernel config line: `BPF_SYSCALL=y` \
             (expected CONFIG_NAME=value or `# CONFIG_NAME is not set`)"
        );
        assert!(requested_options(&[fragment("e.config", "CONFIG_BPF=\n")]).is_err());
        assert!(requested_options(&[fragment("l.config", "CONFIG_bpf=y\n")]).is_err());
    }

    #[test]
    fn flavour_and_series_fragments_apply_where_they_say() {
        let all = [
            fragment("bpf.config", "CONFIG_BPF=y\n"),
            fragment("debug.config", "CONFIG_KASAN=y\n"),
            fragment("race.config", "CONFIG_KCSAN=y\n"),
            fragment("sysctl.config", "# kernel: < 7.0\nCONFIG_PROC_SYSCTL=y\n"),
            fragment(
                "new.config",
                "# only new ones\n# kernel: >= 7.0\nCONFIG_X=y\n",
            ),
        ];
        let names = |flavour, series: &str| {
            select_fragments(&all, flavour, Series::parse(series).unwrap())
                .unwrap()
                .iter()
                .map(|f| f.path.file_name().unwrap().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(names(Flavour::Default, "6.12"), "bpf.config sysctl.config");
        assert_eq!(
            names(Flavour::Debug, "6.12.117"),
            "bpf.config debug.config sysctl.config"
        );
        assert_eq!(
            names(Flavour::Race, "6.12"),
            "bpf.config race.config sysctl.config"
        );
        assert_eq!(names(Flavour::Default, "7.3"), "bpf.config new.config");
        let bad = [fragment("odd.config", "# kernel: about 7\n")];
        let err = select_fragments(&bad, Flavour::Default, Series::parse("7.3").unwrap());
        assert!(
            matches!(err, Err(FragmentError::Condition { .. })),
            "{err:?}"
        );
    }

    #[test]
    fn series_are_read_from_versions_and_ordered() {
        assert_eq!(
            Series::parse("6.12.117"),
            Some(Series {
                major: 6,
                minor: 12
            })
        );
        assert_eq!(
            Series::parse("7.3-rc1"),
            Some(Series { major: 7, minor: 3 })
        );
        assert_eq!(Series::parse("7"), None);
        assert!(Series::parse("6.12").unwrap() < Series::parse("7.0").unwrap());
        assert!(Series::parse("6.9").unwrap() < Series::parse("6.12").unwrap());
    }

    #[test]
    fn later_fragments_override_earlier_ones() {
        let requested = requested_options(&[
            fragment("a.config", "CONFIG_SMP=y\n"),
            fragment("b.config", "# CONFIG_SMP is not set\n"),
        ])
        .unwrap();
        assert_eq!(requested.len(), 1);
        assert_eq!(requested[0].value, None);
    }

    #[test]
    fn dropped_options_are_named_with_their_origin() {
        let requested = requested_options(&[fragment(
            "bpf.config",
            "CONFIG_BPF=y\nCONFIG_DEBUG_INFO_BTF=y\nCONFIG_NOT_A_REAL_OPTION=y\n# CONFIG_USB is not set\nCONFIG_X=n\n",
        )])
        .unwrap();
        let final_config = "CONFIG_BPF=y\n# CONFIG_DEBUG_INFO_BTF is not set\nCONFIG_USB=y\n";
        let dropped: Vec<String> = dropped_options(&requested, final_config)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(dropped.len(), 3, "{dropped:#?}");
        assert!(dropped[0].starts_with(
            "CONFIG_DEBUG_INFO_BTF=y (images/bpf.config:2), but the final .config has it not set"
        ));
        assert!(dropped[1].starts_with("CONFIG_NOT_A_REAL_OPTION=y (images/bpf.config:3)"));
        assert_eq!(
            dropped[2],
            "CONFIG_USB unset (images/bpf.config:4), but the final .config has CONFIG_USB=y"
        );
    }

    /// A fragment file the core does not list is silently no part of any
    /// kernel: programs.config (IKCONFIG) once was, and the default kernel
    /// lost /proc/config.gz with its cache key changed.
    #[test]
    fn every_fragment_file_of_the_core_is_in_its_list() {
        let images = Path::new(env!("CARGO_MANIFEST_DIR")).join("images");
        let listed: Vec<&str> = CORE_FRAGMENTS.iter().map(|(name, _)| *name).collect();
        let mut files: Vec<String> = std::fs::read_dir(&images)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".config"))
            .collect();
        files.sort();
        assert!(files.len() > 5, "{files:?}");
        for file in &files {
            assert!(
                listed.contains(&file.as_str()),
                "{file} is not in CORE_FRAGMENTS"
            );
        }
        for name in TYPE_FRAGMENTS {
            assert!(
                listed.contains(name),
                "{name} of TYPE_FRAGMENTS is not in CORE_FRAGMENTS"
            );
        }
    }
}
