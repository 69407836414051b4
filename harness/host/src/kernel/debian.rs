//! Debian-packaged kernel sources beyond the one installed: `linux-source-X.Y`
//! packages fetched with apt through a private sources list and state
//! directory (the host's apt configuration is left untouched), checked, and
//! their tarball kept in the cache.
//!
//! Layout in the cache:
//! - `apt/`: apt's configuration (`apt.conf`, `sources.list`), lists and
//!   cache, refreshed at most once an hour;
//! - `packages/<package>_<version>/linux-source-X.Y.tar.xz`: the tarballs,
//!   named as the installed package names its own, so the series can be read
//!   from the file name.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};

use super::config::Series;
use crate::progress::format_duration;

/// Where Debian's newer kernels are: the release the project targets, its
/// successor, their backports, and unstable.
pub(crate) const SUITES: [&str; 5] = [
    "bookworm",
    "bookworm-backports",
    "trixie",
    "trixie-backports",
    "sid",
];
/// Used when the host's sources name no Debian archive.
const DEFAULT_ARCHIVE: &str = "http://deb.debian.org/debian";
const DEFAULT_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
/// How old the private package lists may get before `available` refreshes them.
const REFRESH_EVERY: Duration = Duration::from_secs(3600);
const PACKAGE_PREFIX: &str = "linux-source-";

/// The newest version of one kernel source package in Debian's registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Available {
    /// `linux-source-7.3`
    pub(crate) package: String,
    pub(crate) series: Series,
    /// Debian's version, `7.3.4-1~bpo13+1`
    pub(crate) version: String,
    /// Where that version is, `trixie-backports`
    pub(crate) suite: String,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum DebianError {
    #[error(
        "no Debian package {package}; Debian's registry has: {} (suites {})",
        .available.join(", "),
        SUITES.join(", ")
    )]
    UnknownSeries {
        package: String,
        /// The series that are available, `6.12`, `7.3`
        available: Vec<String>,
    },
    #[error(
        "{action} failed: `{command}` ended with {status}; the last lines it printed:\n{tail}"
    )]
    Apt {
        action: String,
        command: String,
        status: String,
        tail: String,
    },
    #[error("{deb} does not hold {member} (dpkg-deb --contents lists:\n{contents})")]
    NoTarball {
        deb: String,
        member: String,
        contents: String,
    },
}

/// Every `linux-source-X.Y` package in the suites of [`SUITES`], with its
/// newest version, sorted by series. Refreshes the private package lists
/// first when they are more than an hour old.
pub(crate) fn available(cache: &Path) -> Result<Vec<Available>> {
    let apt = AptDir::new(cache);
    let _lock = crate::paths::lock_exclusive(
        &apt.dir.join("harness.lock"),
        "another process is reading Debian's package lists",
    )?;
    apt.prepare()?;
    let names = apt.run(
        "listing kernel source packages",
        "apt-cache",
        &["pkgnames", PACKAGE_PREFIX],
    )?;
    let mut args = vec!["madison"];
    args.extend(
        names
            .lines()
            .map(str::trim)
            .filter(|name| series_of(name).is_some()),
    );
    if args.len() == 1 {
        return Ok(Vec::new());
    }
    let madison = apt.run("listing kernel source versions", "apt-cache", &args)?;
    Ok(newest_versions(&madison))
}

/// The tarball of Debian's `linux-source-<series>`: the cached one if there
/// is one (no network then, whatever Debian has published since), else the
/// newest version, downloaded, checked and kept in the cache.
pub(crate) fn fetch(series: Series, cache: &Path) -> Result<PathBuf> {
    let package = format!("{PACKAGE_PREFIX}{series}");
    let packages = cache.join("packages");
    if let Some(tarball) = cached(&packages, &package)? {
        return Ok(tarball);
    }
    // One download per package; whoever waited here finds it cached.
    let _lock = crate::paths::lock_exclusive(
        &packages.join(format!("{package}.lock")),
        &format!("another process is downloading {package}"),
    )?;
    if let Some(tarball) = cached(&packages, &package)? {
        return Ok(tarball);
    }
    sweep_interrupted(&packages, &package)?;
    let all = available(cache)?;
    let wanted = all
        .iter()
        .find(|candidate| candidate.package == package)
        .ok_or_else(|| DebianError::UnknownSeries {
            package: package.clone(),
            available: all.iter().map(|a| a.series.to_string()).collect(),
        })?;
    download(wanted, &packages, &AptDir::new(cache))
}

/// `packages/<package>_<version>/linux-source-X.Y.tar.xz` for the newest
/// version of `package` in the cache, if any.
fn cached(packages: &Path, package: &str) -> Result<Option<PathBuf>> {
    let entries = match std::fs::read_dir(packages) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err).with_context(|| format!("reading {}", packages.display())),
    };
    let prefix = format!("{package}_");
    let mut best: Option<(String, PathBuf)> = None;
    for entry in entries.filter_map(|entry| entry.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(version) = name.strip_prefix(&prefix) else {
            continue;
        };
        let version = version.replace("%3a", ":");
        let tarball = entry.path().join(format!("{package}.tar.xz"));
        let newer = best
            .as_ref()
            .is_none_or(|(known, _)| compare_versions(&version, known).is_gt());
        if newer && tarball.is_file() {
            best = Some((version, tarball));
        }
    }
    Ok(best.map(|(_, tarball)| tarball))
}

/// Removes what a killed download of `package` left (its lock is held, so
/// nobody else is downloading it): each is as big as the package.
fn sweep_interrupted(packages: &Path, package: &str) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(packages) else {
        return Ok(());
    };
    let prefix = temp_prefix(package);
    for entry in entries.filter_map(|entry| entry.ok()) {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            std::fs::remove_dir_all(entry.path())
                .with_context(|| format!("removing {}", entry.path().display()))?;
        }
    }
    Ok(())
}

fn temp_prefix(package: &str) -> String {
    format!(".fetching-{package}-")
}

/// Downloads `wanted` into a temporary directory beside its final place,
/// extracts the tarball and renames it into place; the .deb goes with the
/// temporary directory.
fn download(wanted: &Available, packages: &Path, apt: &AptDir) -> Result<PathBuf> {
    let pinned = format!("{}={}", wanted.package, wanted.version);
    let uris = apt.run(
        &format!("locating {pinned}"),
        "apt-get",
        &["download", "--print-uris", &pinned],
    )?;
    let (deb_name, size) = parse_print_uris(&uris).with_context(|| {
        format!("apt-get download --print-uris {pinned} printed no download:\n{uris}")
    })?;
    let work = tempfile::Builder::new()
        .prefix(&temp_prefix(&wanted.package))
        .tempdir_in(packages)
        .with_context(|| format!("creating a temporary directory in {}", packages.display()))?;
    tracing::info!(
        "downloading {} ({}, {} MB) from Debian {} ...",
        wanted.package,
        wanted.version,
        size.div_ceil(1_000_000),
        wanted.suite
    );
    let start = Instant::now();
    apt.run_in(
        &format!("downloading {pinned}"),
        "apt-get",
        &["download", &pinned],
        work.path(),
    )?;
    let deb = work.path().join(deb_name);
    let entry_name = format!("{}_{}", wanted.package, wanted.version.replace(':', "%3a"));
    let staged = work.path().join(&entry_name);
    let tarball_name = format!("{}.tar.xz", wanted.package);
    extract_tarball(
        &deb,
        &format!("usr/src/{tarball_name}"),
        &staged.join(&tarball_name),
    )?;
    let entry = packages.join(&entry_name);
    // Under the lock, whatever is there is a leftover without its tarball
    // (`cached` found none): replace it.
    if entry.exists() {
        std::fs::remove_dir_all(&entry)
            .with_context(|| format!("removing the incomplete {}", entry.display()))?;
    }
    std::fs::rename(&staged, &entry)
        .with_context(|| format!("moving {} into place", entry.display()))?;
    let tarball = entry.join(tarball_name);
    tracing::info!(
        "{} {} downloaded in {}: {}",
        wanted.package,
        wanted.version,
        format_duration(start.elapsed()),
        tarball.display()
    );
    Ok(tarball)
}

/// Checks that `deb` holds `member` as a file, then extracts only that to `to`.
fn extract_tarball(deb: &Path, member: &str, to: &Path) -> Result<()> {
    let contents = duct::cmd!("dpkg-deb", "--contents", deb)
        .stdout_capture()
        .read()
        .with_context(|| format!("listing {} with dpkg-deb --contents", deb.display()))?;
    let Some(archived) = archived_file(&contents, member) else {
        return Err(DebianError::NoTarball {
            deb: deb.display().to_string(),
            member: member.to_owned(),
            contents: crate::text::tail(&contents, 20),
        }
        .into());
    };
    let unpacked = deb.with_extension("unpacked");
    std::fs::create_dir_all(&unpacked)
        .with_context(|| format!("creating {}", unpacked.display()))?;
    duct::cmd!("dpkg-deb", "--fsys-tarfile", deb)
        .pipe(duct::cmd!("tar", "-x", "-C", &unpacked, archived))
        .run()
        .with_context(|| format!("extracting {member} from {}", deb.display()))?;
    let dir = to
        .parent()
        .with_context(|| format!("{} has no parent", to.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::rename(unpacked.join(member), to)
        .with_context(|| format!("moving the extracted {member} to {}", to.display()))
}

/// The name under which `dpkg-deb --contents` lists the regular file
/// `member` (`./usr/src/...`), if it does.
fn archived_file<'a>(contents: &'a str, member: &str) -> Option<&'a str> {
    contents.lines().find_map(|line| {
        // -rw-r--r-- root/root SIZE YYYY-MM-DD HH:MM ./usr/src/linux-source-7.3.tar.xz
        let path = line.split_whitespace().nth(5)?;
        let is_file = line.starts_with('-');
        (is_file && path.trim_start_matches("./") == member).then_some(path)
    })
}

/// The file name and size of the one download `apt-get download
/// --print-uris` announces: `'URI' NAME SIZE HASH`.
fn parse_print_uris(output: &str) -> Option<(String, u64)> {
    output.lines().find_map(|line| {
        let mut fields = line.strip_prefix('\'')?.split_whitespace().skip(1);
        let name = fields.next()?;
        let size = fields.next()?.parse().ok()?;
        name.ends_with(".deb").then(|| (name.to_owned(), size))
    })
}

/// The series of a package named exactly `linux-source-MAJOR.MINOR`.
fn series_of(package: &str) -> Option<Series> {
    let rest = package.strip_prefix(PACKAGE_PREFIX)?;
    let (major, minor) = rest.split_once('.')?;
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    (digits(major) && digits(minor)).then(|| Series::parse(rest))?
}

/// The newest version of each kernel source package in `apt-cache madison`
/// output (`package | version | URI suite/component arch Packages`), sorted
/// by series.
fn newest_versions(madison: &str) -> Vec<Available> {
    let mut newest: BTreeMap<Series, Available> = BTreeMap::new();
    for line in madison.lines() {
        let fields: Vec<&str> = line.split('|').map(str::trim).collect();
        let [package, version, origin] = fields[..] else {
            continue;
        };
        let origin: Vec<&str> = origin.split_whitespace().collect();
        let (Some(series), [_uri, location, .., "Packages"]) = (series_of(package), &origin[..])
        else {
            continue;
        };
        let suite = location.split('/').next().unwrap_or(location);
        let candidate = Available {
            package: package.to_owned(),
            series,
            version: version.to_owned(),
            suite: suite.to_owned(),
        };
        match newest.get(&series) {
            Some(known) if compare_versions(&known.version, version).is_ge() => {}
            _ => {
                newest.insert(series, candidate);
            }
        }
    }
    newest.into_values().collect()
}

/// Debian's version order (dpkg's): epoch, then upstream version, then
/// revision, each compared as runs of non-digits (`~` before everything,
/// even the end) and numbers.
pub(crate) fn compare_versions(a: &str, b: &str) -> Ordering {
    let split = |version: &str| {
        let (epoch, rest) = match version.split_once(':') {
            Some((epoch, rest)) => (epoch.parse::<u64>().unwrap_or(0), rest),
            None => (0, version),
        };
        let (upstream, revision) = rest.rsplit_once('-').unwrap_or((rest, ""));
        (epoch, upstream.to_owned(), revision.to_owned())
    };
    let (a, b) = (split(a), split(b));
    a.0.cmp(&b.0)
        .then_with(|| compare_fragment(&a.1, &b.1))
        .then_with(|| compare_fragment(&a.2, &b.2))
}

/// dpkg's `verrevcmp`.
fn compare_fragment(a: &str, b: &str) -> Ordering {
    fn order(c: Option<&u8>) -> i32 {
        match c {
            None => 0,
            Some(b'~') => -1,
            Some(c) if c.is_ascii_digit() => 0,
            Some(c) if c.is_ascii_alphabetic() => i32::from(*c),
            Some(c) => i32::from(*c) + 256,
        }
    }
    /// The number `s` starts with, without leading zeros, and the rest.
    fn digits(s: &[u8]) -> (&[u8], &[u8]) {
        let s = &s[s.iter().take_while(|c| **c == b'0').count()..];
        let len = s.iter().take_while(|c| c.is_ascii_digit()).count();
        s.split_at(len)
    }
    let non_digit = |s: &[u8]| s.first().is_some_and(|c| !c.is_ascii_digit());
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    while !a.is_empty() || !b.is_empty() {
        while non_digit(a) || non_digit(b) {
            let (x, y) = (order(a.first()), order(b.first()));
            if x != y {
                return x.cmp(&y);
            }
            a = a.get(1..).unwrap_or_default();
            b = b.get(1..).unwrap_or_default();
        }
        let ((x, rest_a), (y, rest_b)) = (digits(a), digits(b));
        // Without leading zeros, the longer number is the bigger one.
        let by_number = x.len().cmp(&y.len()).then_with(|| x.cmp(y));
        if by_number.is_ne() {
            return by_number;
        }
        (a, b) = (rest_a, rest_b);
    }
    Ordering::Equal
}

/// The apt directory in the cache: a configuration that points apt at it
/// instead of the host's lists, cache, status and preferences.
struct AptDir {
    dir: PathBuf,
}

impl AptDir {
    fn new(cache: &Path) -> Self {
        AptDir {
            dir: cache.join("apt"),
        }
    }

    fn conf(&self) -> PathBuf {
        self.dir.join("apt.conf")
    }

    /// Runs `program` (apt-get or apt-cache) with this configuration, in
    /// this directory; returns its standard output.
    fn run(&self, action: &str, program: &str, args: &[&str]) -> Result<String> {
        self.run_in(action, program, args, &self.dir)
    }

    fn run_in(&self, action: &str, program: &str, args: &[&str], cwd: &Path) -> Result<String> {
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
    fn prepare(&self) -> Result<()> {
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

    fn series(text: &str) -> Series {
        Series::parse(text).unwrap()
    }

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
    fn madison_gives_the_newest_version_of_each_series() {
        // apt-cache madison on this project's machines, reordered to show
        // that the order of the lines does not matter.
        let madison = "\
linux-source-6.1 |  6.1.170-3 | http://deb.debian.org/debian bookworm/main amd64 Packages
linux-source-6.1 |  6.1.176-1 | http://deb.debian.org/debian bookworm/main amd64 Packages
linux-source-6.12 | 6.12.95-1~bpo12+1 | http://deb.debian.org/debian bookworm-backports/main amd64 Packages
linux-source-6.12 | 6.12.117-1 | http://deb.debian.org/debian trixie/main amd64 Packages
linux-source-7.2 | 7.2.12-1~bpo13+1 | http://deb.debian.org/debian trixie-backports/main amd64 Packages
linux-source-7.2 |   7.2.13-1 | http://deb.debian.org/debian sid/main amd64 Packages
linux-source-7.3 | 7.3.4-1~bpo13+1 | http://deb.debian.org/debian trixie-backports/main amd64 Packages
linux-source-7.3 | 7.3.4-1~bpo13+1 | http://deb.debian.org/debian trixie-backports/main Sources
linux-source | 7.3.4-1 | http://deb.debian.org/debian sid/main amd64 Packages
";
        let newest: Vec<String> = newest_versions(madison)
            .iter()
            .map(|a| format!("{} {} {} {}", a.package, a.series, a.version, a.suite))
            .collect();
        assert_eq!(
            newest,
            [
                "linux-source-6.1 6.1 6.1.176-1 bookworm",
                "linux-source-6.12 6.12 6.12.117-1 trixie",
                "linux-source-7.2 7.2 7.2.13-1 sid",
                "linux-source-7.3 7.3 7.3.4-1~bpo13+1 trixie-backports",
            ]
        );
    }

    #[test]
    fn versions_compare_as_dpkg_does() {
        let less = [
            ("7.3.4-1~bpo13+1", "7.3.4-1"),
            ("7.2.12-1~bpo13+1", "7.2.13-1"),
            ("6.12.95-1~bpo12+1", "6.12.117-1"),
            ("7.3~rc1-1", "7.3-1"),
            ("7.3-1", "7.3a-1"),
            ("7.3-1", "7.3.0-1"),
            ("2.0", "1:1.0"),
            ("1.0-1", "1.0-1+b1"),
            ("1.0-9", "1.0-10"),
        ];
        for (older, newer) in less {
            assert_eq!(
                compare_versions(older, newer),
                Ordering::Less,
                "{older} < {newer}"
            );
            assert_eq!(
                compare_versions(newer, older),
                Ordering::Greater,
                "{newer} > {older}"
            );
        }
        assert_eq!(compare_versions("7.3.04-1", "7.3.4-1"), Ordering::Equal);
        assert_eq!(compare_versions("0:7.3-1", "7.3-1"), Ordering::Equal);
    }

    #[test]
    fn only_linux_source_major_minor_is_a_kernel_source_package() {
        assert_eq!(series_of("linux-source-7.3"), Some(series("7.3")));
        assert_eq!(series_of("linux-source-6.12"), Some(series("6.12")));
        for other in [
            "linux-source",
            "linux-source-7",
            "linux-source-7.3-rt",
            "linux-doc-7.3",
        ] {
            assert_eq!(series_of(other), None, "{other}");
        }
    }

    #[test]
    fn print_uris_gives_the_file_and_its_size() {
        let output = "'http://deb.debian.org/debian/pool/main/l/linux/linux-source-7.3_7.3.4-1%7ebpo13%2b1_all.deb' \
            linux-source-7.3_7.3.4-1~bpo13+1_all.deb 166780612 SHA256:703e369ddd4cce971452f5a593ee55df3a5c10c83caf0fa0df039633ed181ee3\n";
        assert_eq!(
            parse_print_uris(output),
            Some((
                "linux-source-7.3_7.3.4-1~bpo13+1_all.deb".to_owned(),
                166_780_612
            ))
        );
        assert_eq!(parse_print_uris("Reading package lists...\n"), None);
    }

    #[test]
    fn the_tarball_must_be_a_file_in_the_package() {
        let contents = "\
drwxr-xr-x root/root         0 2026-07-02 13:50 ./usr/src/
-rw-r--r-- root/root 137961112 2026-07-02 13:50 ./usr/src/linux-source-6.1.tar.xz
lrwxrwxrwx root/root         0 2026-07-02 13:50 ./usr/src/linux-source-7.3.tar.xz -> x
";
        assert_eq!(
            archived_file(contents, "usr/src/linux-source-6.1.tar.xz"),
            Some("./usr/src/linux-source-6.1.tar.xz")
        );
        assert_eq!(
            archived_file(contents, "usr/src/linux-source-7.3.tar.xz"),
            None
        );
        assert_eq!(archived_file(contents, "usr/src"), None);
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
    fn an_unknown_series_names_those_debian_has() {
        let err = DebianError::UnknownSeries {
            package: "linux-source-9.9".into(),
            available: vec!["6.1".into(), "6.12".into(), "7.2".into(), "7.3".into()],
        };
        assert_eq!(
            err.to_string(),
            "no Debian package linux-source-9.9; Debian's registry has: 6.1, 6.12, 7.2, 7.3 \
             (suites bookworm, bookworm-backports, trixie, trixie-backports, sid)"
        );
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

/// Real `.deb` files built with dpkg-deb (no network).
#[cfg(test)]
mod deb_tests {
    use super::*;

    /// A `linux-source-7.3` package holding `files` (path under the root, content).
    fn build_deb(dir: &Path, files: &[(&str, &[u8])]) -> PathBuf {
        let root = dir.join("root");
        std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
        std::fs::write(
            root.join("DEBIAN/control"),
            "Package: linux-source-7.3\nVersion: 7.3.4-1\nArchitecture: all\n\
             Maintainer: Nobody <nobody@example.org>\nDescription: test\n",
        )
        .unwrap();
        for (path, content) in files {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        let deb = dir.join("linux-source-7.3_7.3.4-1_all.deb");
        duct::cmd!("dpkg-deb", "--root-owner-group", "--build", &root, &deb)
            .stdout_null()
            .run()
            .unwrap();
        deb
    }

    #[test]
    fn only_the_tarball_is_extracted() {
        let dir = tempfile::tempdir().unwrap();
        let deb = build_deb(
            dir.path(),
            &[
                ("usr/src/linux-source-7.3.tar.xz", b"\xfd7zXZ\0 the source"),
                ("usr/share/doc/linux-source-7.3/copyright", b"GPL"),
            ],
        );
        let to = dir.path().join("entry/linux-source-7.3.tar.xz");
        extract_tarball(&deb, "usr/src/linux-source-7.3.tar.xz", &to).unwrap();
        assert_eq!(std::fs::read(&to).unwrap(), b"\xfd7zXZ\0 the source");
        assert!(!dir.path().join("entry/usr").exists());
    }

    #[test]
    fn a_package_without_the_tarball_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let deb = build_deb(dir.path(), &[("usr/src/linux-source-7.2.tar.xz", b"x")]);
        let to = dir.path().join("entry/linux-source-7.3.tar.xz");
        let err = extract_tarball(&deb, "usr/src/linux-source-7.3.tar.xz", &to).unwrap_err();
        let message = err.to_string();
        assert!(
            matches!(err.downcast_ref(), Some(DebianError::NoTarball { .. })),
            "{message}"
        );
        assert!(
            message.starts_with(&format!(
                "{} does not hold usr/src/linux-source-7.3.tar.xz",
                deb.display()
            )),
            "{message}"
        );
        assert!(
            message.contains("./usr/src/linux-source-7.2.tar.xz"),
            "{message}"
        );
        assert!(!to.exists());
    }

    #[test]
    fn a_cached_tarball_is_used_without_apt_and_the_newest_wins() {
        let cache = tempfile::tempdir().unwrap();
        let packages = cache.path().join("packages");
        for (entry, with_tarball) in [
            ("linux-source-7.3_7.3.2-1~bpo13+1", true),
            ("linux-source-7.3_7.3.10-1~bpo13+1", true),
            // Newest, but without its tarball: not an entry.
            ("linux-source-7.3_7.3.11-1", false),
            ("linux-source-7.30_7.30.1-1", true),
        ] {
            let dir = packages.join(entry);
            std::fs::create_dir_all(&dir).unwrap();
            if with_tarball {
                let name = format!("{}.tar.xz", entry.split('_').next().unwrap());
                std::fs::write(dir.join(name), b"x").unwrap();
            }
        }
        // No apt directory exists: a hit must not need apt or the network.
        let tarball = fetch(Series::parse("7.3").unwrap(), cache.path()).unwrap();
        assert_eq!(
            tarball,
            packages.join("linux-source-7.3_7.3.10-1~bpo13+1/linux-source-7.3.tar.xz")
        );
        assert!(!cache.path().join("apt").exists());
    }

    #[test]
    fn an_interrupted_download_of_the_same_package_is_swept() {
        let packages = tempfile::tempdir().unwrap();
        let mine = packages.path().join(".fetching-linux-source-7.3-abc");
        let other = packages.path().join(".fetching-linux-source-7.2-abc");
        for dir in [&mine, &other] {
            std::fs::create_dir_all(dir.join("x")).unwrap();
        }
        sweep_interrupted(packages.path(), "linux-source-7.3").unwrap();
        assert!(!mine.exists());
        assert!(other.exists());
    }
}
