//! apt, kept to itself: a configuration, sources list, lists and cache in
//! the harness's cache directory (the host's apt configuration is left
//! untouched), and the Debian archive the host's own sources name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};

use super::{DebianError, SUITES};

/// Used when the host's sources name no Debian archive.
const DEFAULT_ARCHIVE: &str = "http://deb.debian.org/debian";
const DEFAULT_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
/// How old the private package lists may get before they are refreshed.
const REFRESH_EVERY: Duration = Duration::from_secs(3600);

/// The apt directory in the cache: a configuration that points apt at it
/// instead of the host's lists, cache, status and preferences.
pub(super) struct AptDir {
    pub(super) dir: PathBuf,
}

impl AptDir {
    pub(super) fn new(cache: &Path) -> Self {
        AptDir {
            dir: cache.join("apt"),
        }
    }

    pub(super) fn conf(&self) -> PathBuf {
        self.dir.join("apt.conf")
    }

    /// Runs `program` (apt-get or apt-cache) with this configuration, in
    /// this directory; returns its standard output.
    pub(super) fn run(&self, action: &str, program: &str, args: &[&str]) -> Result<String> {
        self.run_in(action, program, args, &self.dir)
    }

    pub(super) fn run_in(
        &self,
        action: &str,
        program: &str,
        args: &[&str],
        cwd: &Path,
    ) -> Result<String> {
        let mut full = vec!["-c".to_owned(), self.conf().display().to_string()];
        full.extend(args.iter().map(|arg| (*arg).to_owned()));
        let command = format!("cd {} && {program} {}", cwd.display(), full.join(" "));
        let output = duct::cmd(program, &full)
            .dir(cwd)
            // A killed harness must not leave a download writing into a
            // directory the next fetch sweeps.
            .before_spawn(crate::process::die_with_parent)
            .stdout_capture()
            .stderr_capture()
            .unchecked()
            .run()
            .with_context(|| format!("running {program} (is this Debian?)"))?;
        if !output.status.success() {
            return Err(DebianError::Apt {
                action: action.to_owned(),
                command,
                status: output.status.code().map_or_else(
                    || output.status.to_string(),
                    |code| format!("exit code {code}"),
                ),
                tail: crate::text::tail(&String::from_utf8_lossy(&output.stderr), 15),
            }
            .into());
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Writes the configuration and sources, and refreshes the lists when
    /// they are an hour old or the sources changed. The caller holds the lock.
    pub(super) fn prepare(&self) -> Result<()> {
        for dir in [
            "state/lists/partial",
            "cache/archives/partial",
            "sources.list.d",
            "preferences.d",
        ] {
            let dir = self.dir.join(dir);
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let status = self.dir.join("state/status");
        if !status.exists() {
            std::fs::write(&status, "")
                .with_context(|| format!("creating {}", status.display()))?;
        }
        let sources = private_sources(&host_archive());
        write_if_changed(&self.conf(), &private_conf(&self.dir))?;
        write_if_changed(&self.dir.join("sources.list"), &sources)?;
        let stamp = self.dir.join("updated");
        let age = std::fs::metadata(&stamp)
            .and_then(|meta| meta.modified())
            .ok()
            .and_then(|modified| SystemTime::now().duration_since(modified).ok());
        let updated_for = std::fs::read_to_string(&stamp).ok();
        if !needs_refresh(updated_for.as_deref(), age, &sources) {
            return Ok(());
        }
        self.run("refreshing Debian's package lists", "apt-get", &["update"])?;
        crate::paths::write_atomically(&stamp, sources.as_bytes())
    }
}

fn write_if_changed(path: &Path, text: &str) -> Result<()> {
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(());
    }
    crate::paths::write_atomically(path, text.as_bytes())
}

/// The lists are refreshed when they were last refreshed for other sources
/// (or never), or more than [`REFRESH_EVERY`] ago.
fn needs_refresh(updated_for: Option<&str>, age: Option<Duration>, sources: &str) -> bool {
    updated_for != Some(sources) || age.is_none_or(|age| age > REFRESH_EVERY)
}

/// apt's configuration, read after the host's (`apt-get -c`): every place
/// apt writes or whose content changes its answers is moved into `dir`.
/// The host's other settings (a proxy, say) still apply; its hooks, which
/// would tell PackageKit or AppStream about lists that are not the host's,
/// are cleared.
fn private_conf(dir: &Path) -> String {
    let dir = dir.display();
    format!(
        "// Written by the struct_ops harness (kernel::debian): apt pointed at this directory.\n\
         Dir::Etc::sourcelist \"{dir}/sources.list\";\n\
         Dir::Etc::sourceparts \"{dir}/sources.list.d\";\n\
         Dir::Etc::preferences \"{dir}/preferences\";\n\
         Dir::Etc::preferencesparts \"{dir}/preferences.d\";\n\
         Dir::State \"{dir}/state\";\n\
         Dir::State::status \"{dir}/state/status\";\n\
         Dir::Cache \"{dir}/cache\";\n\
         #clear APT::Update::Pre-Invoke;\n\
         #clear APT::Update::Post-Invoke;\n\
         #clear APT::Update::Post-Invoke-Success;\n\
         #clear DPkg::Pre-Invoke;\n\
         #clear DPkg::Post-Invoke;\n\
         #clear DPkg::Pre-Install-Pkgs;\n"
    )
}

/// A Debian archive: where to fetch from and the keyring that signs it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Archive {
    uri: String,
    signed_by: Option<String>,
}

/// The private sources list: `archive`'s URI, each of [`SUITES`], component
/// main, package indexes only (no translations, contents or AppStream data).
fn private_sources(archive: &Archive) -> String {
    let signed_by = archive
        .signed_by
        .as_deref()
        .map(|keyring| format!(" signed-by={keyring}"))
        .unwrap_or_default();
    let mut text = String::from("# Written by the struct_ops harness (kernel::debian).\n");
    for suite in SUITES {
        text.push_str(&format!(
            "deb [target=Packages{signed_by}] {} {suite} main\n",
            archive.uri
        ));
    }
    text
}

/// The Debian archive the host's own sources use (a mirror it is allowed to
/// reach), else deb.debian.org; signed by the keyring the host names, else
/// Debian's archive keyring.
fn host_archive() -> Archive {
    let codename = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("VERSION_CODENAME="))
                .map(|value| value.trim_matches('"').to_owned())
        })
        .unwrap_or_default();
    let mut texts = vec![(
        false,
        std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default(),
    )];
    if let Ok(entries) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            let deb822 = path.extension().is_some_and(|ext| ext == "sources");
            let one_line = path.extension().is_some_and(|ext| ext == "list");
            if deb822 || one_line {
                texts.push((deb822, std::fs::read_to_string(&path).unwrap_or_default()));
            }
        }
    }
    let found = texts.iter().find_map(|(deb822, text)| {
        let archives = if *deb822 {
            deb822_archives(text, &codename)
        } else {
            one_line_archives(text, &codename)
        };
        archives.into_iter().next()
    });
    let default_keyring = Path::new(DEFAULT_KEYRING)
        .is_file()
        .then(|| DEFAULT_KEYRING.to_owned());
    let archive = found.unwrap_or_else(|| Archive {
        uri: DEFAULT_ARCHIVE.to_owned(),
        signed_by: None,
    });
    Archive {
        signed_by: archive.signed_by.or(default_keyring),
        ..archive
    }
}

/// Whether a source for `suite` is Debian's main archive (not its security
/// archive, not a third party's): a suite of the host's release or of those
/// this module asks for.
fn is_archive_suite(suite: &str, host_codename: &str) -> bool {
    let base = suite.split('-').next().unwrap_or(suite);
    let known = ["stable", "testing", "unstable", "sid", "bookworm", "trixie"];
    !suite.ends_with("-security") && (base == host_codename || known.contains(&base))
}

/// The archives in a deb822 `.sources` file, in order.
fn deb822_archives(text: &str, host_codename: &str) -> Vec<Archive> {
    let mut archives = Vec::new();
    let mut stanza: BTreeMap<String, String> = BTreeMap::new();
    let mut last_key = None;
    for line in text.lines().chain(std::iter::once("")) {
        if line.trim().is_empty() {
            archives.extend(deb822_stanza(&stanza, host_codename));
            stanza.clear();
            last_key = None;
        } else if line.starts_with('#') {
            continue;
        } else if line.starts_with([' ', '\t']) {
            // A continuation line: an inline key, or a long list.
            if let Some(value) = last_key.as_ref().and_then(|key| stanza.get_mut(key)) {
                value.push('\n');
                value.push_str(line.trim());
            }
        } else if let Some((key, value)) = line.split_once(':') {
            let key = key.trim().to_ascii_lowercase();
            stanza.insert(key.clone(), value.trim().to_owned());
            last_key = Some(key);
        }
    }
    archives
}

fn deb822_stanza(stanza: &BTreeMap<String, String>, host_codename: &str) -> Vec<Archive> {
    let words = |key: &str| -> Vec<&str> {
        stanza
            .get(key)
            .map(|value| value.split_whitespace().collect())
            .unwrap_or_default()
    };
    let enabled = stanza.get("enabled").is_none_or(|value| value != "no");
    let is_archive = words("types").contains(&"deb")
        && words("components").contains(&"main")
        && words("suites")
            .iter()
            .any(|suite| is_archive_suite(suite, host_codename));
    if !enabled || !is_archive {
        return Vec::new();
    }
    // An inline key (several lines) cannot go on a one-line entry: fall
    // back to Debian's keyring for it.
    let signed_by = stanza
        .get("signed-by")
        .filter(|value| !value.contains('\n') && value.starts_with('/'))
        .cloned();
    words("uris")
        .into_iter()
        .map(|uri| Archive {
            uri: uri.to_owned(),
            signed_by: signed_by.clone(),
        })
        .collect()
}

/// The archives in a one-line `sources.list`:
/// `deb [option=value ...] URI suite component...`.
fn one_line_archives(text: &str, host_codename: &str) -> Vec<Archive> {
    text.lines()
        .filter_map(|line| {
            let line = line.split('#').next()?.trim();
            let rest = line.strip_prefix("deb")?;
            let (options, rest) = match rest.trim_start().strip_prefix('[') {
                Some(bracketed) => bracketed.split_once(']')?,
                None if rest.starts_with([' ', '\t']) => ("", rest),
                None => return None,
            };
            let mut fields = rest.split_whitespace();
            let uri = fields.next()?;
            let suite = fields.next()?;
            let is_archive = fields.any(|component| component == "main")
                && is_archive_suite(suite, host_codename);
            let signed_by = options
                .split_whitespace()
                .find_map(|option| option.strip_prefix("signed-by="))
                .map(str::to_owned);
            is_archive.then(|| Archive {
                uri: uri.to_owned(),
                signed_by,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hosts_deb822_sources_give_the_main_archive() {
        // This project's machines, plus a disabled mirror and a third party.
        let text = "Types: deb\n\
            # http://snapshot.debian.org/archive/debian/20250520T000000Z\n\
            URIs: http://deb.debian.org/debian\n\
            Suites: bookworm bookworm-updates\n\
            Components: main\n\
            Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\
            \n\
            Types: deb\n\
            URIs: http://deb.debian.org/debian-security\n\
            Suites: bookworm-security\n\
            Components: main\n\
            \n\
            Types: deb\n\
            URIs: https://deb.nodesource.com/node_20.x\n\
            Suites: nodistro\n\
            Components: main\n";
        assert_eq!(
            deb822_archives(text, "bookworm"),
            [Archive {
                uri: "http://deb.debian.org/debian".into(),
                signed_by: Some("/usr/share/keyrings/debian-archive-keyring.gpg".into()),
            }]
        );
        let other = "Types: deb deb-src\nURIs: http://old.example/debian\nSuites: trixie\n\
            Components: main\nEnabled: no\n\n\
            Types: deb\nURIs: http://mirror.example/debian\nSuites: trixie\nComponents: main contrib\n\
            Signed-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n mQINBF\n";
        assert_eq!(
            deb822_archives(other, "trixie"),
            [Archive {
                uri: "http://mirror.example/debian".into(),
                signed_by: None,
            }]
        );
    }

    #[test]
    fn the_hosts_one_line_sources_give_the_main_archive() {
        let text = "# deb http://commented.example/debian bookworm main\n\
            deb-src http://ftp.de.debian.org/debian bookworm main\n\
            deb http://security.debian.org/debian-security bookworm-security main\n\
            deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main\n\
            deb http://ftp.de.debian.org/debian bookworm contrib\n\
            deb [arch=amd64 signed-by=/etc/apt/keyrings/debian.gpg] http://ftp.de.debian.org/debian bookworm main contrib # mirror\n\
            deb http://deb.debian.org/debian bookworm main\n";
        assert_eq!(
            one_line_archives(text, "bookworm"),
            [
                Archive {
                    uri: "http://ftp.de.debian.org/debian".into(),
                    signed_by: Some("/etc/apt/keyrings/debian.gpg".into()),
                },
                Archive {
                    uri: "http://deb.debian.org/debian".into(),
                    signed_by: None,
                },
            ]
        );
        assert_eq!(
            one_line_archives("deb http://x.example/ubuntu noble main\n", "noble").len(),
            1
        );
        assert!(
            one_line_archives("deb http://x.example/ubuntu noble main\n", "bookworm").is_empty()
        );
    }

    #[test]
    fn the_private_sources_name_every_suite_of_the_archive() {
        let archive = Archive {
            uri: "http://deb.debian.org/debian".into(),
            signed_by: Some(DEFAULT_KEYRING.into()),
        };
        let lines: Vec<String> = private_sources(&archive)
            .lines()
            .skip(1)
            .map(str::to_owned)
            .collect();
        assert_eq!(
            lines,
            SUITES.map(|suite| format!(
                "deb [target=Packages signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] \
                 http://deb.debian.org/debian {suite} main"
            ))
        );
        let unsigned = Archive {
            signed_by: None,
            ..archive
        };
        assert!(private_sources(&unsigned)
            .contains("deb [target=Packages] http://deb.debian.org/debian sid main\n"));
    }

    #[test]
    fn lists_are_refreshed_hourly_and_when_the_sources_change() {
        let minute = Some(Duration::from_secs(60));
        let day = Some(Duration::from_secs(86_400));
        assert!(!needs_refresh(Some("deb a"), minute, "deb a"));
        assert!(needs_refresh(Some("deb a"), day, "deb a"));
        assert!(needs_refresh(Some("deb a"), minute, "deb b"));
        assert!(needs_refresh(None, None, "deb a"));
    }

    #[test]
    fn a_failed_apt_command_is_named_with_what_apt_said() {
        let dir = tempfile::tempdir().unwrap();
        // No apt.conf there: apt-cache refuses to start, without touching the network.
        let apt = AptDir::new(dir.path());
        std::fs::create_dir_all(&apt.dir).unwrap();
        let err = apt
            .run(
                "listing kernel source packages",
                "apt-cache",
                &["pkgnames", "linux-source-"],
            )
            .unwrap_err();
        let message = err.to_string();
        assert!(
            matches!(err.downcast_ref(), Some(DebianError::Apt { .. })),
            "{message}"
        );
        let conf = apt.conf().display().to_string();
        let expected = format!(
            "listing kernel source packages failed: `cd {} && apt-cache -c {conf} pkgnames \
             linux-source-` ended with exit code 100; the last lines it printed:\n",
            apt.dir.display()
        );
        assert!(message.starts_with(&expected), "{message}");
        assert!(
            message.contains(&format!("Unable to read {conf}")),
            "{message}"
        );
    }
}
