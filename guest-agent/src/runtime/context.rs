//! What a scenario works with: every action becomes a Step carrying the
//! kernel output it caused, and every expectation that fails is recorded
//! rather than aborting, so one run reports all that went wrong.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use nix::sys::signal::Signal;

use harness_wire::kernel_type::{ExitKind, KernelType, TypeExit};
use harness_wire::protocol::{Outcome, ScenarioResult, Source, Step};
use harness_wire::report::Report;
use harness_wire::shell::quote_words;
use harness_wire::workload::WorkloadReport;

use super::kernel_output::{KernelLog, KernelOutput};
use super::kmemleak::{LeakCheck, LeakQueue, Settled};
use super::loader::{Finished, Held, LoaderCommand};
use super::module::{self, ModuleSpec};
use super::netem::{self, Netem};
use super::programs::{self, ProgramChecks};
use super::sched_ext::{self, SchedExtState};
use super::taint::{kernel_taint, taint_names, EXPECTED_TAINT};
use super::workload::{self, Workload};

/// How many of kmemleak's reports a result shows in full.
const LEAKS_SHOWN: usize = 3;

/// The subject's module and where its built file is.
#[derive(Debug, Clone)]
pub(crate) struct Module {
    pub(crate) spec: ModuleSpec,
    pub(crate) path: PathBuf,
}

/// Called once, where a scenario may be looked at (see `run_scenario_pausing`).
pub(crate) type Pause = Box<dyn FnMut(&str) -> Outcome>;

/// What a scenario's subject owns in the kernel beyond its module: the
/// type it implements, the log lines that are its, and the ejection its
/// scenario expects.
#[derive(Debug, Clone, Default)]
pub(crate) struct Owned {
    pub(crate) kernel_type: Option<KernelType>,
    pub(crate) log_prefixes: Vec<String>,
    pub(crate) expected_exit: Option<(ExitKind, &'static str)>,
    /// The harness's fault test: the first step returns an error.
    pub(crate) fail_after_first_step: bool,
}

/// How long a scheduler's ejection may take to finish disabling after the
/// scenario's steps (the kernel does it from a kthread, within milliseconds).
const DISABLE_LIMIT: Duration = Duration::from_secs(5);

/// What a scenario works with: it runs the subject's loader, loads and
/// unloads its module, reads and writes files, runs workloads, and records
/// what it expects of each step. Every action is a step in the result.
pub struct Context {
    /// Where a person looks around mid-scenario (`harness shell --scenario`).
    pause: Option<Pause>,
    loader: LoaderCommand,
    module: Option<Module>,
    output: KernelOutput,
    result: ScenarioResult,
    started: Instant,
    taint_at_start: u64,
    /// What to check of the programs the loaders report.
    checks: ProgramChecks,
    /// Whether the kernel's BPF stats (run counts) are on, or why not.
    stats: Result<(), String>,
    /// The leak check, on a kernel with kmemleak; why it could not start.
    leaks: Result<Option<LeakCheck>, String>,
    /// The type it implements and what the kernel says of it.
    owned: Owned,
    /// Interfaces the scenario put a netem qdisc on and has not cleared:
    /// cleared when it ends, so the next scenario in this VM starts clean.
    netem_on: Vec<String>,
    /// A KCSAN report outside the subject was still being printed when the
    /// last step ended (see [`crate::splat::without_foreign_races`]).
    foreign_race_open: bool,
    /// KCSAN's counters as a scenario that hunts races began its steps.
    kcsan_at_start: Option<crate::splat::KcsanCounters>,
}

/// Index of a step in the result, to check its output.
#[derive(Clone, Copy)]
pub struct StepId(usize);

impl Context {
    pub(crate) fn new(
        scenario: &str,
        loader: LoaderCommand,
        module: Option<Module>,
        pause: Option<Pause>,
        (checks, owned): (ProgramChecks, Owned),
    ) -> Result<Self> {
        let output = KernelOutput::start(&owned.log_prefixes)?;
        Ok(Context {
            pause,
            loader,
            module,
            output,
            taint_at_start: kernel_taint()?,
            result: ScenarioResult {
                scenario: scenario.to_owned(),
                ..ScenarioResult::default()
            },
            started: Instant::now(),
            checks,
            stats: programs::enable_stats(),
            leaks: LeakCheck::start().map_err(|err| format!("{err:#}")),
            owned,
            netem_on: Vec::new(),
            foreign_race_open: false,
            kcsan_at_start: None,
        })
    }

    fn push_step(
        &mut self,
        action: String,
        outcome: Outcome,
        stdout: String,
        stderr: String,
        duration: Duration,
    ) -> Result<StepId> {
        let module = self.module.as_ref().map(|module| module.spec.name);
        let (timeline, foreign) = crate::splat::without_foreign_races(
            self.output.take_timeline()?,
            module,
            &mut self.foreign_race_open,
        );
        for header in foreign {
            self.measure(format!(
                "a data race outside the subject, left out of `{action}`'s output: {header}"
            ));
        }
        self.result.steps.push(Step {
            action,
            outcome,
            stdout,
            stderr,
            timeline,
            summary: Vec::new(),
            duration_ms: duration.as_millis() as u64,
            programs: Vec::new(),
        });
        if self.owned.fail_after_first_step && self.result.steps.len() == 1 {
            anyhow::bail!("the first step failed on purpose (the harness's fault test)");
        }
        Ok(StepId(self.result.steps.len() - 1))
    }

    /// A step that ran no process (a syscall, a wait): no stdout or stderr.
    fn push_quiet_step(
        &mut self,
        action: String,
        outcome: Outcome,
        start: Instant,
    ) -> Result<StepId> {
        self.push_step(
            action,
            outcome,
            String::new(),
            String::new(),
            start.elapsed(),
        )
    }

    /// A loader's step: the lines it wrote about its programs are taken
    /// out of its stderr and kept as data.
    fn push_finished(&mut self, action: String, finished: Finished) -> Result<StepId> {
        let (stderr, reported) = harness_wire::programs::take_program_lines(&finished.stderr);
        let step = self.push_step(
            action,
            finished.outcome,
            finished.stdout,
            stderr,
            finished.duration,
        )?;
        self.result.steps[step.0].programs = reported;
        Ok(step)
    }

    /// The subject's module; scenarios that use it are declared as needing it.
    fn module(&self) -> Result<&Module> {
        self.module
            .as_ref()
            .context("this scenario's subject has no module, or none was given (--module)")
    }

    /// Samples densely for the steps of a scenario that hunts races, and
    /// as the kernel booted otherwise and once they are over (`during`
    /// false): see [`crate::splat::tune_kcsan`].
    /// While they run, KCSAN's counters say how densely it watched: their
    /// change is a measurement (how many watchpoints, how many races).
    pub(crate) fn sample_races(&mut self, during: bool) -> Result<()> {
        let hunting = during && self.checks.hunts_races;
        crate::splat::tune_kcsan(hunting).context(
            "setting KCSAN's sampling (/sys/module/kcsan/parameters: skip_watch, udelay_task)",
        )?;
        if hunting {
            self.kcsan_at_start = crate::splat::KcsanCounters::read();
        } else if let Some(start) = self.kcsan_at_start.take() {
            if let Some(end) = crate::splat::KcsanCounters::read() {
                self.measure(end.since(&start));
            }
        }
        Ok(())
    }

    /// Loads the subject's module, expecting it to load and print its loaded line.
    pub fn insmod(&mut self) -> Result<StepId> {
        let module = self.module()?.clone();
        let start = Instant::now();
        let outcome = match module::insmod(&module.path) {
            Ok(()) => Outcome::Ok,
            Err(outcome) => outcome,
        };
        if let Ok(Some(leaks)) = &mut self.leaks {
            leaks.module_loaded(module.spec.name);
        }
        let action = format!("insmod {}", module.spec.file_name());
        let step = self.push_quiet_step(action, outcome, start)?;
        self.expect_outcome(step, Outcome::Ok);
        if let Some(line) = module.spec.loaded_line {
            self.expect_line(step, Source::Kernel, line);
        }
        Ok(step)
    }

    /// One rmmod attempt; the outcome is `Ok` or the errno.
    pub fn rmmod(&mut self) -> Result<StepId> {
        let name = self.module()?.spec.name;
        let start = Instant::now();
        let outcome = match module::rmmod(name) {
            Ok(()) => Outcome::Ok,
            Err(errno) => Outcome::errno(errno),
        };
        let step = self.push_quiet_step(format!("rmmod {name}"), outcome, start)?;
        self.expect_unloaded_line(step);
        Ok(step)
    }

    /// A module that declares what it prints once unloaded must have
    /// printed it, when the step unloaded it.
    fn expect_unloaded_line(&mut self, step: StepId) {
        let line = self
            .module
            .as_ref()
            .and_then(|module| module.spec.unloaded_line);
        if let Some(line) = line {
            if self.step(step).outcome == Outcome::Ok {
                self.expect_line(step, Source::Kernel, line);
            }
        }
    }

    /// rmmod, retried while the module is still busy, up to `limit`.
    pub fn rmmod_within(&mut self, limit: Duration, after: &str) -> Result<StepId> {
        let name = self.module()?.spec.name;
        let start = Instant::now();
        let outcome = match module::rmmod_within(name, limit) {
            Ok(took) => {
                self.measure(format!(
                    "module unloaded {} ms after {after}",
                    took.as_millis()
                ));
                Outcome::Ok
            }
            Err((errno, took)) => Outcome::Failed {
                reason: format!(
                    "{} after retrying for {} ms",
                    Outcome::errno(errno),
                    took.as_millis()
                ),
            },
        };
        let action = format!("rmmod {name} (retried for up to {} s)", limit.as_secs());
        let step = self.push_quiet_step(action, outcome, start)?;
        self.expect_outcome(step, Outcome::Ok);
        self.expect_unloaded_line(step);
        Ok(step)
    }

    /// The subject's module's name, if it has one.
    pub fn module_name(&self) -> Option<&'static str> {
        self.module.as_ref().map(|module| module.spec.name)
    }

    /// Whether the subject's module is loaded now.
    pub fn module_is_loaded(&self) -> bool {
        self.module
            .as_ref()
            .is_some_and(|module| module::is_loaded(module.spec.name))
    }

    /// Runs the subject's loader with `args` to completion.
    pub fn run_loader(&mut self, args: &[&str]) -> Result<StepId> {
        let action = format!("{} {}", self.loader.name, quote_words(args));
        let finished = self
            .loader
            .run(args)
            .with_context(|| format!("`{action}`"))?;
        self.push_finished(action, finished)
    }

    /// Runs `<loader> ARGS`, expects it to exit with success, and returns its
    /// step with the report `R` it printed: None, and a failure naming the
    /// command, when it printed none.
    pub fn run_loader_for_report<R: Report>(
        &mut self,
        args: &[&str],
    ) -> Result<(StepId, Option<R>)> {
        let step = self.run_loader(args)?;
        self.expect_outcome(step, Outcome::exited(harness_wire::exit::SUCCESS));
        let missing = format!("`{}` printed no report", self.step(step).action);
        let report = self.expect_report(step, &missing);
        Ok((step, report))
    }

    /// Starts `<loader> hold` and returns once it printed `attached_line`.
    pub fn hold(&mut self, attached_line: &str) -> Result<(Held, StepId)> {
        let start = Instant::now();
        let held = self.loader.start_until(&["hold"], attached_line, 1)?;
        let action = format!("{} &", held.what);
        let step = self.push_quiet_step(action, Outcome::Attached, start)?;
        Ok((held, step))
    }

    /// Starts the loader with `args` and returns once it printed `until` `times` times.
    pub fn start_until(
        &mut self,
        args: &[&str],
        until: &str,
        times: usize,
    ) -> Result<(Held, StepId)> {
        let start = Instant::now();
        let held = self.loader.start_until(args, until, times)?;
        let action = format!("{} & (until it printed {until:?} {times} times)", held.what);
        let step = self.push_quiet_step(action, Outcome::Running, start)?;
        Ok((held, step))
    }

    /// Runs `workload`'s threads in a child process to their end, as a
    /// step: its outcome is `exit 0`, the errno of a setup the kernel
    /// refused (SCHED_EXT without sched_ext: EINVAL), or why it could not
    /// start (no cgroup v2); its stdout is the report's summary (the same
    /// every run), and each thread's figures are measurements.
    pub fn run_workload(&mut self, workload: &Workload) -> Result<(StepId, WorkloadReport)> {
        let action = workload.action();
        let ran =
            workload::run(&self.loader.binary, workload).with_context(|| format!("`{action}`"))?;
        let Some(report) = ran.report else {
            let step = self.push_step(action, ran.outcome, ran.stdout, ran.stderr, ran.duration)?;
            let step = self.step(step);
            anyhow::bail!(
                "`{}` printed no report ({}): {}",
                step.action,
                step.outcome,
                step.stderr.trim()
            );
        };
        let stdout = report.summary();
        let step = self.push_step(
            action.clone(),
            ran.outcome,
            stdout,
            ran.stderr,
            ran.duration,
        )?;
        for (index, thread) in report.threads.iter().enumerate() {
            self.measure(format!("{action}: thread {index}: {}", thread.figures()));
        }
        if let Some(cleanup) = ran.cleanup {
            self.expect(false, format!("`{action}`: {cleanup}"));
        }
        Ok((step, report))
    }

    /// Puts `netem` on its interface (`tc qdisc replace dev lo root netem
    /// delay 5ms loss 2%`) as a step, expecting tc to exit 0; the qdisc
    /// stays until [`Context::remove_netem`] or the scenario's end, however
    /// it ends. An error, after the step, when tc failed: it names the
    /// package (iproute2) or the kernel options (CONFIG_NET_SCH_NETEM) to add.
    pub fn netem(&mut self, netem: &Netem) -> Result<StepId> {
        let (action, ran) = run_tc(&netem.words()?)?;
        let device = netem.device().to_owned();
        // Known before the step is recorded, which may fail; a replace
        // that failed changed nothing, and leaves nothing to remove.
        if ran.outcome == Outcome::exited(0) && !self.netem_on.contains(&device) {
            self.netem_on.push(device);
        }
        let step = self.push_step(action, ran.outcome, ran.stdout, ran.stderr, ran.duration)?;
        self.tc_succeeded(step)?;
        Ok(step)
    }

    /// Takes `device`'s netem qdisc away again (`tc qdisc del dev lo
    /// root`) as a step, expecting tc to exit 0.
    pub fn remove_netem(&mut self, device: &str) -> Result<StepId> {
        let (action, ran) = run_tc(&netem::removal_words(device)?)?;
        self.netem_on.retain(|on| on != device);
        let step = self.push_step(action, ran.outcome, ran.stdout, ran.stderr, ran.duration)?;
        self.tc_succeeded(step)?;
        Ok(step)
    }

    /// Fails the scenario, with the fix, unless tc's step exited 0.
    fn tc_succeeded(&mut self, step: StepId) -> Result<()> {
        let step = self.step(step);
        if step.outcome == Outcome::exited(0) {
            return Ok(());
        }
        let fix = netem::explain(&step.stderr).map_or(String::new(), |fix| format!(": {fix}"));
        anyhow::bail!(
            "`{}` failed ({}){fix}\n{}",
            step.action,
            step.outcome,
            step.stderr.trim()
        )
    }

    /// Removes every netem qdisc the scenario left, each as a step; a
    /// failure fails the scenario, since the next one would inherit it.
    fn remove_left_netem(&mut self) {
        for device in std::mem::take(&mut self.netem_on) {
            if let Err(err) = self.remove_netem(&device) {
                self.result.failures.push(format!(
                    "removing the scenario's netem qdisc from {device} at its end: {err:#}"
                ));
            }
        }
    }

    /// Calls the pause, if it has not been called yet, as a step of its own.
    pub(crate) fn pause_here(&mut self, where_: &str) -> Result<()> {
        if let Some(mut pause) = self.pause.take() {
            let start = Instant::now();
            let outcome = pause(where_);
            self.push_quiet_step(format!("interactive shell ({where_})"), outcome, start)?;
        }
        Ok(())
    }

    /// Sends `signal` to a running loader and waits for it to end.
    pub fn stop(&mut self, held: Held, signal: Signal) -> Result<StepId> {
        let attached = format!("while `{}` is still attached", held.what);
        self.pause_here(&attached)?;
        let action = format!(
            "kill -{} {}",
            signal.as_str().trim_start_matches("SIG"),
            held.what
        );
        let finished = held.stop(signal).with_context(|| format!("`{action}`"))?;
        self.push_finished(action, finished)
    }

    /// Waits for a running loader to end by itself, as a step (within the
    /// loaders' command limit; a loader still running then is killed and
    /// the step says where it was stuck).
    pub fn wait(&mut self, held: Held) -> Result<StepId> {
        let action = format!("wait for {} to exit", held.what);
        let finished = held.wait().with_context(|| format!("`{action}`"))?;
        self.push_finished(action, finished)
    }

    /// Reads a file (`/proc/...`) as a step: its content is the stdout.
    pub fn read_file(&mut self, path: &Path) -> Result<StepId> {
        let start = Instant::now();
        let (outcome, content) = match std::fs::read_to_string(path) {
            Ok(content) => (Outcome::Ok, content),
            Err(err) => (io_outcome(&err), String::new()),
        };
        let action = format!("cat {}", path.display());
        self.push_step(action, outcome, content, String::new(), start.elapsed())
    }

    /// Writes `contents` to a file (a /proc trigger, a sysctl) in one
    /// write, as a step: the kernel output it caused is the step's.
    pub fn write_file(&mut self, path: &Path, contents: &str) -> Result<StepId> {
        use std::io::Write as _;
        let start = Instant::now();
        let written = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|mut file| file.write_all(contents.as_bytes()));
        let outcome = match written {
            Ok(()) => Outcome::Ok,
            Err(err) => io_outcome(&err),
        };
        let action = format!("echo -n {} > {}", quote_words(&[contents]), path.display());
        self.push_quiet_step(action, outcome, start)
    }

    /// A step's record so far.
    pub fn step(&self, step: StepId) -> &Step {
        &self.result.steps[step.0]
    }

    /// Replaces a step's timeline with each distinct line and its count.
    pub fn summarise(&mut self, step: StepId) {
        self.result.steps[step.0].summarise();
    }

    /// For output that differs on every run: moves the step's stdout into the
    /// measurements and keeps only the count of its kernel lines.
    pub fn keep_out_of_snapshot(&mut self, step: StepId) {
        let step = &mut self.result.steps[step.0];
        let lines = std::mem::take(&mut step.timeline).len();
        let stdout = std::mem::take(&mut step.stdout);
        let measurement = format!(
            "{}: {} | {lines} lines of kernel output, not kept",
            step.action,
            stdout.trim()
        );
        self.measure(measurement);
    }

    /// For stdout that differs on every run (counts that follow the
    /// traffic): it moves into the measurements, and what the scenario
    /// checked of it, the same every run, takes its place.
    pub fn replace_stdout(&mut self, step: StepId, checked: String) {
        let step = &mut self.result.steps[step.0];
        let stdout = std::mem::replace(&mut step.stdout, checked);
        let measurement = format!("{}: {}", step.action, stdout.trim());
        self.measure(measurement);
    }

    /// Notes a figure that varies between runs (it stays out of snapshots).
    pub fn measure(&mut self, measurement: String) {
        self.result.measurements.push(measurement);
    }

    /// Records `what` as a failure unless `holds`.
    pub fn expect(&mut self, holds: bool, what: impl Into<String>) {
        if !holds {
            self.result.failures.push(what.into());
        }
    }

    /// The report `step` printed; its absence is the failure `missing`.
    pub fn expect_report<R: Report>(&mut self, step: StepId, missing: &str) -> Option<R> {
        let report = R::find_in(&self.step(step).stdout);
        self.expect(report.is_some(), missing);
        report
    }

    /// The step ended as `expected`.
    pub fn expect_outcome(&mut self, step: StepId, expected: Outcome) {
        let actual = &self.step(step).outcome;
        let holds = *actual == expected;
        let what = format!(
            "`{}`: expected {expected}, got {actual}\n{}",
            self.step(step).action,
            self.step(step).stderr.trim()
        );
        self.expect(holds, what);
    }

    /// How many times the step's kernel output holds `text` from `source`.
    pub fn count_lines(&self, step: StepId, source: Source, text: &str) -> usize {
        self.step(step).count(source, text)
    }

    /// The distinct lines of a step's kernel output that are not in `allowed`.
    pub fn lines_outside(&self, step: StepId, allowed: &[(Source, &str)]) -> Vec<String> {
        self.step(step).lines_outside(allowed)
    }

    /// The step's kernel output holds nothing but lines of `allowed`.
    pub fn expect_only_lines(&mut self, step: StepId, allowed: &[(Source, &str)]) {
        let unexpected = self.lines_outside(step, allowed);
        self.expect(
            unexpected.is_empty(),
            format!("unexpected kernel output: {unexpected:?}"),
        );
    }

    /// The step's kernel output holds `text` from `source` exactly `times` times.
    pub fn expect_lines(&mut self, step: StepId, source: Source, text: &str, times: usize) {
        let found = self.count_lines(step, source, text);
        let what = format!(
            "`{}`: expected {times} [{source:?}] line(s) \"{text}\", found {found}",
            self.step(step).action
        );
        self.expect(found == times, what);
    }

    /// The step's kernel output holds `text` from `source` exactly once.
    pub fn expect_line(&mut self, step: StepId, source: Source, text: &str) {
        self.expect_lines(step, source, text, 1);
    }

    /// The step's stdout holds the line `line`, exactly.
    pub fn expect_stdout_line(&mut self, step: StepId, line: &str) {
        let stdout = &self.step(step).stdout;
        let found = stdout.lines().any(|printed| printed.trim_end() == line);
        let what = format!(
            "`{}`: expected the line \"{line}\" on stdout, it was:\n{}",
            self.step(step).action,
            stdout.trim_end()
        );
        self.expect(found, what);
    }

    /// The step's stderr holds `text`.
    pub fn expect_stderr_contains(&mut self, step: StepId, text: &str) {
        let stderr = &self.step(step).stderr;
        let what = format!(
            "`{}`: expected stderr to contain \"{text}\", it was: {}",
            self.step(step).action,
            stderr.trim()
        );
        self.expect(stderr.contains(text), what);
    }

    /// sched_ext's state now, as a step (`cat /sys/kernel/sched_ext/...`)
    /// whose stdout holds what a snapshot may: the state and the enabled
    /// scheduler's name; its counters go into the measurements.
    pub fn sched_ext_state(&mut self) -> Result<(StepId, SchedExtState)> {
        let start = Instant::now();
        let state = SchedExtState::read()?;
        let action = "cat /sys/kernel/sched_ext/{state,root/ops}".to_owned();
        let step = self.push_step(
            action,
            Outcome::Ok,
            format!("{}\n", state.describe()),
            String::new(),
            start.elapsed(),
        )?;
        self.measure(format!(
            "sched_ext: switch_all {}, enable_seq {}, nr_rejected {}",
            u8::from(state.switch_all),
            state.enable_seq,
            state.nr_rejected
        ));
        Ok((step, state))
    }

    /// sched_ext has the BPF scheduler `name` enabled now (a step).
    pub fn expect_scheduler(&mut self, name: &str) -> Result<StepId> {
        let (step, state) = self.sched_ext_state()?;
        let holds = state.state == "enabled" && state.ops.as_deref() == Some(name);
        self.expect(
            holds,
            format!(
                "expected the BPF scheduler \"{name}\" enabled; sched_ext says {}",
                state.describe()
            ),
        );
        Ok(step)
    }

    /// What a type's implementation must leave behind when its scenario
    /// ends: for sched_ext, no scheduler enabled and no task on the ext
    /// class. Checked after the scenario's steps; a failure names what is left.
    pub(crate) fn check_type_released(&mut self) -> Result<()> {
        if self.owned.kernel_type != Some(KernelType::SchedExtOps) {
            return Ok(());
        }
        let state = sched_ext::wait_disabled(DISABLE_LIMIT)?;
        self.expect(
            state.state == "disabled",
            format!(
                "{} s after the scenario's steps, sched_ext says {}: a scheduler was left \
                 attached (its loader still holds the link, or a link was pinned)",
                DISABLE_LIMIT.as_secs(),
                state.describe()
            ),
        );
        match sched_ext::tasks_on_ext()? {
            Some(tasks) => self.expect(
                tasks.is_empty(),
                format!(
                    "tasks left on the ext class after the scenario: {}",
                    tasks.join(", ")
                ),
            ),
            None => self.measure(
                "which class each task is on was not checked: this kernel's /proc/PID/sched \
                 has no ext.enabled line"
                    .to_owned(),
            ),
        }
        Ok(())
    }

    /// Fails the scenario on every ejection it did not expect, naming the
    /// kind, the reason and the message, and on an expected one that did
    /// not happen; the exits go into the result.
    fn check_exits(&mut self, exits: Vec<TypeExit>) {
        let expected = self.owned.expected_exit;
        let pattern = expected.map(|(_, pattern)| regex::Regex::new(pattern));
        let mut met = false;
        for exit in exits.iter().filter(|exit| exit.kind.is_ejection()) {
            let matches =
                |regex: &regex::Regex| regex.is_match(exit.message.as_deref().unwrap_or(""));
            let wanted = match (expected, &pattern) {
                (Some((kind, _)), Some(Ok(regex))) => exit.kind == kind && matches(regex),
                _ => false,
            };
            met |= wanted;
            if !wanted {
                self.result.failures.push(format!(
                    "the kernel ejected the BPF scheduler {} ({:?}) during the scenario{}:\n{}",
                    exit.describe(),
                    exit.kind,
                    match expected {
                        Some((kind, pattern)) =>
                            format!(", which expects {kind} with a message matching /{pattern}/"),
                        None => String::new(),
                    },
                    exit.backtrace.join("\n")
                ));
            }
        }
        if let (Some((kind, raw)), Some(pattern)) = (expected, &pattern) {
            if let Err(err) = pattern {
                self.result.failures.push(format!(
                    "the expected exit's pattern /{raw}/ is not a regex: {err}"
                ));
            } else if !met {
                let seen: Vec<String> = exits.iter().map(TypeExit::describe).collect();
                self.result.failures.push(format!(
                    "expected the kernel to eject the scheduler with {kind} and a message \
                     matching /{raw}/; it did not (exits seen: {})",
                    if seen.is_empty() {
                        "none".to_owned()
                    } else {
                        seen.join("; ")
                    }
                ));
            }
        }
        self.result.exits = exits;
    }

    /// Fails the scenario on every splat in the log, and on any record or
    /// event the kernel overwrote before the agent read it.
    fn check_log(&mut self, mut log: KernelLog) {
        self.check_exits(std::mem::take(&mut log.exits));
        let stats = &log.stats;
        if stats.kmsg_lost > 0 {
            self.result.failures.push(format!(
                "the kernel log overwrote {} record(s) before the agent read them \
                 ({} read): the splat check is incomplete",
                stats.kmsg_lost, stats.kmsg_records
            ));
        }
        if stats.trace_lost > 0 {
            self.result.failures.push(format!(
                "the trace buffer overwrote {} event(s) before the agent read them \
                 ({} read): the timeline is incomplete",
                stats.trace_lost, stats.trace_lines
            ));
        }
        let module = self.module.as_ref().map(|module| module.spec.name);
        for splat in &log.splats {
            let race = splat.class == harness_wire::splat::RACE_CLASS;
            if race && !harness_wire::splat::race_is_the_subjects(&splat.lines, module) {
                let header = splat.lines.first().map_or("", String::as_str);
                self.measure(format!(
                    "a data race outside the subject, not counted: {header}"
                ));
                continue;
            }
            self.result.failures.push(format!(
                "{}:\n{}",
                harness_wire::splat::splat_failure_head(splat.class),
                splat.lines.join("\n")
            ));
        }
        self.result.log = log.stats;
        self.result.kmsg_tail = log.tail;
    }

    /// Queues the scenario's leak check and scans once: the scan judges
    /// the checks of scenarios before it, and this one's too when `turn`
    /// settles (no scenario follows in this VM). It runs before the kernel
    /// output closes, so a splat during a scan is still this scenario's.
    fn queue_leak_check(&mut self, turn: LeakTurn) -> Settled {
        let queued = match std::mem::replace(&mut self.leaks, Ok(None)) {
            Ok(None) => Ok(false),
            Ok(Some(check)) => turn
                .queue
                .push(turn.id, check)
                .map(|()| true)
                .map_err(|err| format!("{err:#}")),
            Err(err) => Err(err),
        };
        match queued {
            Err(err) => add_leaks(&mut self.result, Err(err)),
            // Nothing to scan for unless earlier scenarios' checks wait.
            Ok(false) if turn.queue.is_empty() => return Settled::new(),
            Ok(_) => {}
        }
        match turn.settle {
            true => turn.queue.settle_all(),
            false => turn.queue.scan(),
        }
    }

    /// Collects what is left, checks the whole log for splats and closes the result.
    /// What `turn`'s scans settled comes back beside the result (this
    /// scenario's leaks among them once settled; see [`add_leaks`]).
    pub(crate) fn finish(
        mut self,
        error: Option<anyhow::Error>,
        turn: LeakTurn,
    ) -> (ScenarioResult, Settled) {
        if let Some(error) = error {
            self.result
                .failures
                .push(format!("the scenario could not run: {error:#}"));
        }
        self.remove_left_netem();
        let settled = self.queue_leak_check(turn);
        match self.output.finish() {
            Ok(log) => self.check_log(log),
            Err(err) => self.result.failures.push(format!(
                "reading the kernel's output at the end: {err:#}; the splat check is incomplete"
            )),
        }
        // A backstop for splats the log lost: the kernel taints itself for them.
        match kernel_taint() {
            Ok(now) => {
                let new = (now & !self.taint_at_start) & !EXPECTED_TAINT;
                if new != 0 {
                    self.result.failures.push(format!(
                        "the kernel became tainted during the scenario: {}",
                        taint_names(new)
                    ));
                }
            }
            Err(err) => self.result.failures.push(format!("{err:#}")),
        }
        let failures = programs::failures(&self.result.steps, &self.checks, &self.stats);
        self.result.failures.extend(failures);
        programs::disable_stats();
        self.result.passed = self.result.failures.is_empty();
        self.result.duration_ms = self.started.elapsed().as_millis() as u64;
        (self.result, settled)
    }
}

/// A scenario's place in its VM's leak checks: the queue, the scenario's
/// id there, and whether every check must be settled before it returns.
pub(crate) struct LeakTurn<'a> {
    pub(crate) queue: &'a mut LeakQueue,
    pub(crate) id: usize,
    pub(crate) settle: bool,
}

/// Adds kmemleak's reports of what a scenario allocated and no longer
/// references to its result: a leak on a path called in a loop leaks at
/// every call, and a few reports show its stack as well as a thousand would.
pub(crate) fn add_leaks(result: &mut ScenarioResult, leaks: Result<Vec<String>, String>) {
    match leaks {
        Ok(leaks) => {
            for leak in leaks.iter().take(LEAKS_SHOWN) {
                result.failures.push(format!(
                    "kmemleak's scan after the scenario found a splat ({}):\n{}",
                    harness_wire::splat::LEAK_CLASS,
                    leak.trim_end()
                ));
            }
            if leaks.len() > LEAKS_SHOWN {
                result.failures.push(format!(
                    "kmemleak found {} more objects the scenario leaked, not shown",
                    leaks.len() - LEAKS_SHOWN
                ));
            }
        }
        Err(err) => result
            .failures
            .push(format!("the leak check could not run: {err}")),
    }
    result.passed = result.failures.is_empty();
}

/// `tc WORDS`, run: the action a step shows, and how it ended.
fn run_tc(words: &[String]) -> Result<(String, Finished)> {
    let action = format!("tc {}", words.join(" "));
    let ran = netem::run_tc(words).with_context(|| format!("`{action}`"))?;
    Ok((action, ran))
}

/// A failed file operation's errno when it has one, its words otherwise.
fn io_outcome(err: &std::io::Error) -> Outcome {
    match err.raw_os_error() {
        Some(errno) => Outcome::Errno { errno },
        None => Outcome::Failed {
            reason: err.to_string(),
        },
    }
}
