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
use std::time::Instant;

use anyhow::{Context, Result};

mod apt;

use self::apt::AptDir;
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

/// Debian's version order (dpkg's, by the `debversion` crate); a version
/// that does not parse sorts before every one that does, by its text
/// among its kind.
pub(crate) fn compare_versions(a: &str, b: &str) -> Ordering {
    use debversion::Version;
    match (a.parse::<Version>(), b.parse::<Version>()) {
        (Ok(a), Ok(b)) => a.cmp(&b),
        (Ok(_), Err(_)) => Ordering::Greater,
        (Err(_), Ok(_)) => Ordering::Less,
        (Err(_), Err(_)) => a.cmp(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(text: &str) -> Series {
        Series::parse(text).unwrap()
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
