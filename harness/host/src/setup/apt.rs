//! Debian packages: which the harness needs, which of them this machine
//! lacks, and what apt would do to install them. apt is asked first
//! (`apt-get install --simulate`): a plan that removes or downgrades a
//! package the machine has stops setup before anything changes, unless the
//! caller named that package as one apt may remove.

use std::fmt::Write as _;
use std::process::Command;

use anyhow::{bail, Context, Result};
use debversion::Version;

use crate::process::first_version;

/// A command that, at this version or later, stands in for a package: a
/// QEMU built from source, or LLVM's own packages' clang.
struct StandIn {
    command: &'static str,
    at_least: (u32, u32),
    /// Any `command-N` on `PATH` counts too (`clang-23` for `clang-22`):
    /// the harness runs the newest clang it finds for its own BPF.
    versioned: bool,
}

/// A Debian package the harness needs.
struct Need {
    package: &'static str,
    stand_in: Option<StandIn>,
}

const fn need(package: &'static str) -> Need {
    Need {
        package,
        stand_in: None,
    }
}

/// What the harness needs, by reason.
const NEEDS: &[Need] = &[
    // The VM: bookworm's QEMU is 7.2, the version the harness is tested on.
    Need {
        package: "qemu-system-x86",
        stand_in: Some(StandIn {
            command: "qemu-system-x86_64",
            at_least: (7, 2),
            versioned: false,
        }),
    },
    // The default kernel source: Debian's 6.12 tarball under /usr/src; 6.1
    // is the real "too old for struct_ops in modules" input of a test.
    need("linux-source-6.12"),
    need("linux-source-6.1"),
    // Building that kernel with BTF.
    need("make"),
    need("gcc"),
    need("flex"),
    need("bison"),
    need("bc"),
    need("libelf-dev"),
    need("libssl-dev"),
    need("dwarves"),
    need("xz-utils"),
    // The out-of-tree modules.
    need("kmod"),
    // The BPF programs (clang -target bpf) and libbpf, vendored by libbpf-sys.
    Need {
        package: "clang",
        stand_in: Some(StandIn {
            command: "clang",
            at_least: (14, 0),
            versioned: false,
        }),
    },
    // The kernel's own BPF needs a newer clang than bookworm's default 14
    // from 7.x on: its sched_ext headers' BPF arena code does not compile
    // with 14, and clang 19 (bookworm main) compiles scx_qmap's arena
    // pointers into code the verifier refuses ("R7 invalid mem access
    // 'scalar'"). bookworm-security has clang 22; the harness compiles
    // every kernel's objects with the newest clang it finds.
    Need {
        package: "clang-22",
        stand_in: Some(StandIn {
            command: "clang",
            at_least: (22, 0),
            versioned: true,
        }),
    },
    need("llvm"),
    need("zlib1g-dev"),
    need("pkg-config"),
    need("linux-libc-dev"),
    // virtme-ng, in a virtualenv, for manual debugging with vng; its guest
    // init needs udev to name the virtio ports it talks over.
    need("python3-venv"),
    need("udev"),
    // Building the Rust virtiofsd.
    need("libcap-ng-dev"),
    need("libseccomp-dev"),
    // Stepping into the VM: bpftool to run there (harness exec), gdb for
    // --gdb, and tmux, which the shell's test types into.
    need("bpftool"),
    need("gdb"),
    need("tmux"),
];

/// The packages this machine lacks; a stand-in command recent enough counts
/// as its package.
pub(crate) fn missing() -> Vec<&'static str> {
    NEEDS
        .iter()
        .filter(|need| !installed(need.package))
        .filter(|need| !need.stand_in.as_ref().is_some_and(StandIn::present))
        .map(|need| need.package)
        .collect()
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|output| output.stdout.starts_with(b"install ok installed"))
}

impl StandIn {
    fn present(&self) -> bool {
        if self.versioned {
            return crate::clang::newest().is_some_and(|(_, version)| *version >= self.at_least);
        }
        let Ok(output) = Command::new(self.command).arg("--version").output() else {
            return false;
        };
        let text = String::from_utf8_lossy(&output.stdout);
        first_version(&text).is_some_and(|version| version >= self.at_least)
    }
}

/// A package apt would take away or take back to an older version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Change {
    /// The package.
    pub(crate) package: String,
    /// The version the machine has.
    pub(crate) installed: String,
    /// The version apt would put in its place (none: removed).
    pub(crate) to: Option<String>,
}

/// What `apt-get install --simulate` says it would do.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Every package it would install or change, with the version it would install.
    pub(crate) installs: Vec<(String, String)>,
    /// Packages it would remove.
    pub(crate) removals: Vec<Change>,
    /// Packages it would replace with an older version.
    pub(crate) downgrades: Vec<Change>,
}

impl Plan {
    /// Reads apt's simulation: `Inst NAME [OLD] (NEW ...)` and `Remv NAME [OLD]`.
    pub(crate) fn parse(simulated: &str) -> Self {
        let inst = regex::Regex::new(r"^Inst (\S+) (?:\[([^\]]+)\] )?\((\S+)").expect("a regex");
        let remv = regex::Regex::new(r"^Remv (\S+)(?: \[([^\]]+)\])?").expect("a regex");
        let mut plan = Plan::default();
        for line in simulated.lines() {
            if let Some(found) = inst.captures(line) {
                let (package, to) = (found[1].to_owned(), found[3].to_owned());
                if let Some(installed) = found.get(2).map(|old| old.as_str().to_owned()) {
                    if older(&to, &installed) {
                        plan.downgrades.push(Change {
                            package: package.clone(),
                            installed,
                            to: Some(to.clone()),
                        });
                    }
                }
                plan.installs.push((package, to));
            } else if let Some(found) = remv.captures(line) {
                plan.removals.push(Change {
                    package: found[1].to_owned(),
                    installed: found.get(2).map_or("", |old| old.as_str()).to_owned(),
                    to: None,
                });
            }
        }
        plan
    }

    /// Removals and downgrades, but those of packages the caller allowed.
    pub(crate) fn losses<'a>(&'a self, allowed: &'a [String]) -> impl Iterator<Item = &'a Change> {
        (self.removals.iter().chain(&self.downgrades))
            .filter(move |change| !allowed.contains(&change.package))
    }
}

/// Whether Debian version `a` is older than `b` (dpkg's order); a version
/// that does not parse is never called older.
fn older(a: &str, b: &str) -> bool {
    match (a.parse::<Version>(), b.parse::<Version>()) {
        (Ok(a), Ok(b)) => a < b,
        _ => false,
    }
}

/// Asks apt what installing `packages` would do. Needs apt's lists, not root.
pub(crate) fn simulate(packages: &[&str]) -> Result<Plan> {
    let output = Command::new("apt-get")
        .args(["install", "--simulate", "--no-install-recommends"])
        .args(packages)
        .env("LC_ALL", "C")
        .output()
        .context("running apt-get install --simulate (is this Debian?)")?;
    if !output.status.success() {
        bail!(
            "apt-get cannot plan the installation of {}:\n{}",
            packages.join(" "),
            String::from_utf8_lossy(&output.stderr).trim_end()
        );
    }
    Ok(Plan::parse(&String::from_utf8_lossy(&output.stdout)))
}

/// Why apt would take `change` away: a Breaks or Conflicts between it and
/// a package the plan installs, in either direction, as Debian declares it.
fn why(change: &Change, plan: &Plan) -> String {
    let declared = |fields: &str| -> Vec<String> {
        relations(fields)
            .filter(|relation| {
                let name = relation.split_whitespace().next().unwrap_or("");
                plan.installs.iter().any(|(package, _)| package == name)
            })
            .collect()
    };
    let ours = fields_of(
        &["dpkg-query", "-W", "-f=${Breaks}, ${Conflicts}"],
        &change.package,
    );
    if let Some(relation) = declared(&ours).first() {
        let name = relation.split_whitespace().next().unwrap_or("");
        let to = plan.version_of(name).unwrap_or("?");
        return format!(
            "{} {} breaks {relation}, which apt would install at {to}",
            change.package, change.installed
        );
    }
    for (package, version) in &plan.installs {
        let theirs = fields_of(
            &["apt-cache", "show", "--no-all-versions"],
            &format!("{package}={version}"),
        );
        let theirs: String = theirs
            .lines()
            .filter_map(|line| {
                line.strip_prefix("Breaks:")
                    .or_else(|| line.strip_prefix("Conflicts:"))
            })
            .collect::<Vec<_>>()
            .join(",");
        let named = relations(&theirs)
            .find(|relation| relation.split_whitespace().next() == Some(change.package.as_str()));
        if let Some(relation) = named {
            return format!("{package} {version}, which apt would install, breaks {relation}");
        }
    }
    "apt's solver gives it up to install the rest (`apt-get install --simulate` shows its plan)"
        .to_owned()
}

impl Plan {
    fn version_of(&self, package: &str) -> Option<&str> {
        let found = self.installs.iter().find(|(name, _)| name == package);
        found.map(|(_, version)| version.as_str())
    }
}

/// The relations of a comma-separated Depends-style field, trimmed.
fn relations(fields: &str) -> impl Iterator<Item = String> + '_ {
    fields
        .split(',')
        .map(str::trim)
        .filter(|relation| !relation.is_empty())
        .map(str::to_owned)
}

fn fields_of(command: &[&str], package: &str) -> String {
    Command::new(command[0])
        .args(&command[1..])
        .arg(package)
        .env("LC_ALL", "C")
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
        .unwrap_or_default()
}

/// The error that stops setup before apt removes or downgrades anything:
/// each package, why, and the choices.
pub(crate) fn refusal(missing: &[&str], plan: &Plan, losses: &[&Change]) -> String {
    let mut text = format!(
        "setup stopped before changing anything: to install {}, apt would",
        missing.join(" ")
    );
    let names: Vec<&str> = losses
        .iter()
        .map(|change| change.package.as_str())
        .collect();
    for change in losses {
        let what = match &change.to {
            None => format!("remove {} {}", change.package, change.installed),
            Some(to) => format!(
                "downgrade {} from {} to {to}",
                change.package, change.installed
            ),
        };
        let _ = write!(text, "\n  - {what}: {}", why(change, plan));
    }
    text.push_str("\nChoose one:");
    let _ = write!(
        text,
        "\n  - keep them: the harness takes a qemu-system-x86_64 of 7.2 or later and a clang of \
         22 or later already on PATH in place of Debian's packages, so install ones that fit \
         beside what you have and run setup again"
    );
    if losses
        .iter()
        .any(|change| change.installed.contains("~bpo12"))
    {
        text.push_str(
            " (yours come from bookworm-backports: with it in apt's sources, \
             `apt-get install -t bookworm-backports qemu-system-x86`)",
        );
    }
    let _ = write!(
        text,
        "\n  - let apt change them: `{} setup{}`, or by hand, as root: \
         `apt-get install --no-install-recommends {}`",
        crate::process::harness_command(),
        names
            .iter()
            .map(|name| format!(" --allow-remove {name}"))
            .collect::<String>(),
        missing.join(" ")
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// apt-get's simulation on a Debian 12 machine that had qemu-utils from
    /// bookworm-backports (trimmed).
    const WITH_BACKPORTED_QEMU_UTILS: &str = "\
NOTE: This is only a simulation!
      apt-get needs root privileges for real execution.
Reading package lists...
Building dependency tree...
The following packages will be REMOVED:
  qemu-utils
Remv qemu-utils [1:10.0.2+ds-2+deb13u1~bpo12+1]
Inst libssl3 [3.0.15-1~deb12u1] (3.0.17-1~deb12u2 Debian:12.12/oldstable [amd64])
Inst qemu-system-common (1:7.2+dfsg-7+deb12u18+b3 Debian:12.15/oldstable [amd64])
Inst qemu-system-x86 (1:7.2+dfsg-7+deb12u18+b3 Debian:12.15/oldstable [amd64])
Inst libfoo1 [2.0-1] (1.9-3 Debian:12.15/oldstable [amd64]) []
Conf qemu-system-x86 (1:7.2+dfsg-7+deb12u18+b3 Debian:12.15/oldstable [amd64])
";

    #[test]
    fn a_removal_and_a_downgrade_are_seen_an_upgrade_is_not() {
        let plan = Plan::parse(WITH_BACKPORTED_QEMU_UTILS);
        assert_eq!(
            plan.removals,
            [Change {
                package: "qemu-utils".into(),
                installed: "1:10.0.2+ds-2+deb13u1~bpo12+1".into(),
                to: None,
            }]
        );
        assert_eq!(
            plan.downgrades,
            [Change {
                package: "libfoo1".into(),
                installed: "2.0-1".into(),
                to: Some("1.9-3".into()),
            }]
        );
        assert_eq!(plan.installs.len(), 4);
        assert_eq!(
            plan.version_of("qemu-system-common"),
            Some("1:7.2+dfsg-7+deb12u18+b3")
        );
    }

    #[test]
    fn setup_stops_naming_the_package_and_the_choices() {
        let plan = Plan::parse(WITH_BACKPORTED_QEMU_UTILS);
        let losses: Vec<&Change> = plan.losses(&[]).collect();
        assert_eq!(losses.len(), 2);
        let text = refusal(&["qemu-system-x86"], &plan, &losses);
        for words in [
            "setup stopped before changing anything",
            "remove qemu-utils 1:10.0.2+ds-2+deb13u1~bpo12+1",
            "downgrade libfoo1 from 2.0-1 to 1.9-3",
            "qemu-system-x86_64 of 7.2 or later",
            "bookworm-backports",
            "--allow-remove qemu-utils --allow-remove libfoo1",
            "apt-get install --no-install-recommends qemu-system-x86",
        ] {
            assert!(text.contains(words), "{words:?} not in:\n{text}");
        }
        // Named, a loss is allowed; the others still stop setup.
        let allowed = ["qemu-utils".to_owned()];
        let left: Vec<&Change> = plan.losses(&allowed).collect();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].package, "libfoo1");
    }

    #[test]
    fn a_plan_that_only_installs_loses_nothing() {
        let plan = Plan::parse(
            "Inst tmux (3.3a-3 Debian:12.15/oldstable [amd64])\nConf tmux (3.3a-3 Debian:12.15/oldstable [amd64])\n",
        );
        assert_eq!(plan.losses(&[]).count(), 0);
        assert_eq!(plan.installs, [("tmux".to_owned(), "3.3a-3".to_owned())]);
    }

    #[test]
    fn a_stand_in_is_read_off_its_version_line() {
        assert_eq!(
            first_version("QEMU emulator version 7.2.19 (Debian 1:7.2+dfsg-7+deb12u18)"),
            Some((7, 2))
        );
        assert_eq!(
            first_version("Debian clang version 14.0.6\nTarget: x86_64-pc-linux-gnu"),
            Some((14, 0))
        );
        assert_eq!(first_version("no version here"), None);
        assert!(older("1:7.2+dfsg-7", "1:10.0.2+ds-2"));
        assert!(!older("3.0.17-1~deb12u2", "3.0.15-1~deb12u1"));
    }
}
