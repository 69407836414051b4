//! The one binary's dispatch: PID 1 in the guest, the loader, a workload's
//! threads, the agent as a plain command, the catalogue, the build step, or
//! (anything else) the host runner under nextest, one libtest-mimic trial
//! per scenario.

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use guest_agent::scenario::Subject;
use harness_host::artifacts::{self, Artifacts};
use harness_host::catalogue::{self, Catalogue};
use harness_host::normalise::Normaliser;
use harness_host::progress::Progress;
use harness_host::snapshot::SnapshotFile;
use harness_host::{setup, suite, vm};
use harness_wire::catalogue::{ScenarioInfo, SubjectInfo};
use harness_wire::roles;
use harness_wire::workload::WorkloadArgs;
use libtest_mimic::{Arguments, Failed, Trial};

/// Where the binary comes from: its package, so the host can build it for
/// the guest (`harness::main!` fills it in).
#[derive(Debug, Clone, Copy)]
pub struct Binary {
    /// `CARGO_PKG_NAME` of the subject's crate.
    pub package: &'static str,
    /// `CARGO_MANIFEST_DIR` of the subject's crate.
    pub manifest_dir: &'static str,
}

/// The binary's `main`: dispatches on PID 1 and on its first argument.
pub fn run_binary(subjects: &'static [&'static Subject], binary: Binary) -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    crate::view::show_diagnostics();
    if std::process::id() == 1 {
        guest_agent::agent::run_as_init(subjects, args);
    }
    let role = args.get(1).and_then(|word| word.to_str()).unwrap_or("");
    match role {
        roles::LOADER => run_loader(subjects, &args),
        roles::WORKLOAD => run_workload(&args[2..]),
        roles::AGENT => {
            let rest = args[..1].iter().chain(&args[2..]).cloned().collect();
            guest_agent::agent::run_as_command(subjects, rest)
        }
        roles::CATALOGUE => {
            let infos: Vec<SubjectInfo> = subjects.iter().map(|subject| subject.info()).collect();
            match serde_json::to_string(&infos) {
                Ok(json) => {
                    println!("{json}");
                    ExitCode::SUCCESS
                }
                Err(err) => fail(anyhow::anyhow!("serialising the catalogue: {err}")),
            }
        }
        roles::BUILD => match build(subjects, binary) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => fail(err),
        },
        _ => test_main(subjects, binary),
    }
}

fn fail(err: anyhow::Error) -> ExitCode {
    eprintln!("error: {err:#}");
    ExitCode::FAILURE
}

/// `__loader <subject> <words>`: the subject's loader with its words.
fn run_loader(subjects: &[&Subject], args: &[OsString]) -> ExitCode {
    let name = args.get(2).and_then(|word| word.to_str()).unwrap_or("");
    let Some(subject) = subjects.iter().find(|subject| subject.name == name) else {
        return fail(anyhow::anyhow!("no subject named {name:?} in this binary"));
    };
    let Some(main) = subject.loader.main else {
        return fail(anyhow::anyhow!(
            "this build of {}'s binary has no loader: the harness builds the guest's with the \
             crate's `loader` feature (cargo test --release --features loader)\n\
             A subject that declares none (`.loader(NAME, LOADER)` on its Subject) has no loader \
             for its scenarios to run",
            subject.name
        ));
    };
    // The loader sees its own name first, as a program does.
    let words = std::iter::once(OsString::from(subject.loader.name))
        .chain(args[3..].iter().cloned())
        .collect();
    main(words)
}

/// `__workload <words>`: a scenario's worker threads, in a process of
/// their own; their report, one JSON line on stdout, is what the agent reads.
fn run_workload(words: &[OsString]) -> ExitCode {
    let args = match WorkloadArgs::parse_words(words) {
        Ok(args) => args,
        Err(err) => return fail(anyhow::anyhow!("{} words: {err}", roles::WORKLOAD)),
    };
    let report = guest_agent::runtime::workers::run_workers(&args);
    println!("{}", report.to_json());
    match report.setup_failure {
        Some(_) => ExitCode::FAILURE,
        None => ExitCode::SUCCESS,
    }
}

/// The subjects of this binary, with the binary built for the guest.
fn catalogue_of(subjects: &[&Subject], binary: Binary, progress: &Progress) -> Result<Catalogue> {
    let infos = subjects.iter().map(|subject| subject.info()).collect();
    catalogue::of_package(
        Path::new(binary.manifest_dir),
        binary.package,
        infos,
        progress,
    )
}

/// `__build`: what a nextest setup script runs before the VM tests, so that
/// no test's timeout covers a cold kernel build: the host's packages (when
/// missing), the guest binary, the kernel and the modules.
fn build(subjects: &[&Subject], binary: Binary) -> Result<()> {
    // First: everything below reads the settings (the cache directory).
    let (options, env) = crate::config::from_env()?;
    setup::ensure()?;
    let progress = crate::view::stderr_progress(env.ci);
    let catalogue = catalogue_of(subjects, binary, &progress)?;
    let built = artifacts::prepare(&options, &catalogue, &progress)?;
    eprintln!(
        "[harness] kernel {} ({} flavour) and {} module(s) ready",
        built.kernel.version,
        built.kernel.flavour.name(),
        built.modules.len()
    );
    Ok(())
}

/// The host runner: one trial per scenario, named by the scenario alone
/// (names are unique across subjects), so `-E 'test(=NAME)'` selects one.
fn test_main(subjects: &'static [&'static Subject], binary: Binary) -> ExitCode {
    let arguments = Arguments::from_args();
    let trials = subjects
        .iter()
        .flat_map(|subject| subject.scenarios.iter())
        .map(|scenario| {
            let name = scenario.name;
            Trial::test(name, move || check(subjects, binary, name))
        })
        .collect();
    libtest_mimic::run(&arguments, trials).exit_code()
}

/// Boots a VM for `scenario` and checks it: a failed scenario prints its
/// failed expectations first (they say what went wrong), then the snapshot
/// is compared (its diff shows where), then the test fails.
fn check(subjects: &[&Subject], binary: Binary, scenario: &str) -> Result<(), Failed> {
    let (options, env) = crate::config::from_env().map_err(|err| format!("{err:#}"))?;
    let progress = crate::view::stderr_progress(env.ci);
    let artifacts = artifacts::prepared(&options, &progress, |progress| {
        catalogue_of(subjects, binary, progress)
    })
    .map_err(|err| format!("{err:#}"))?;
    let (subject, declared) = artifacts
        .catalogue
        .find(scenario)
        .ok_or_else(|| format!("{scenario} is not in the catalogue"))?;
    let normaliser = Normaliser::for_subject(&subject.info).map_err(|err| format!("{err:#}"))?;
    let run = suite::run_scenario(artifacts, scenario, &vm::VmOptions::default())
        .map_err(|err| format!("scenario {scenario} produced no result:\n{err:#}"))?;
    if let Some(boot) = &run.retried_boot {
        // It passed or failed on its own; how its VM came to be is worth a word.
        eprintln!(
            "note: the first boot for {scenario} {} before the agent was ready and was \
             booted again: {} (logs: {})",
            boot.cause.as_str(),
            boot.failure,
            boot.logs.display()
        );
    }
    let failures = failure_report(scenario, &run, &normaliser);
    if let Some(failures) = &failures {
        // stdout, where insta prints its diff, so the two come in this order.
        println!("{failures}");
    }
    let snapshot = normaliser.snapshot_text(&run.result);
    assert_snapshot(artifacts, subject, declared, snapshot);
    match failures {
        Some(failures) => Err(failures.into()),
        None => Ok(()),
    }
}

/// The snapshot of `declared` on this kernel (named as `harness run` names
/// it: [`SnapshotFile::of`]) holds `snapshot`; insta's assertion, after our
/// words when it is new.
fn assert_snapshot(
    artifacts: &Artifacts,
    subject: &catalogue::Subject,
    declared: &ScenarioInfo,
    snapshot: String,
) {
    let file = SnapshotFile::of(&subject.info, declared, &artifacts.kernel.version);
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(&subject.info.snapshots);
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    if let Some(suffix) = &file.suffix {
        settings.set_snapshot_suffix(suffix);
    }
    if let Some(why) = &file.description {
        settings.set_description(why);
    }
    if !file.path.is_file() {
        // insta's words follow; these say what to do, first.
        println!(
            "the snapshot of {} is new ({} does not exist yet): read it with \
             `cargo insta review` and accept it, or write them all with INSTA_UPDATE=always \
             and read the diff",
            declared.name,
            file.path.display()
        );
    }
    let scenario = declared.name.as_str();
    settings.bind(|| insta::assert_snapshot!(scenario, snapshot));
}

fn failure_report(
    scenario: &str,
    run: &vm::ScenarioRun,
    normaliser: &Normaliser,
) -> Option<String> {
    if run.result.passed {
        return None;
    }
    let normalised = normaliser.result(&run.result);
    Some(format!(
        "scenario {scenario} failed:\n- {}\nlogs kept in {}\nconsole tail:\n{}",
        normalised.failures.join("\n- "),
        run.kept_logs
            .as_ref()
            .map_or("(not kept)".to_owned(), |path| path.display().to_string()),
        run.console_tail
    ))
}
