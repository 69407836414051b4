//! Building blocks for a loader (with the `loader` feature): everything of
//! [`harness_loader`], and the helpers that print what a loader tells its
//! scenario (a loader's stdout and stderr are its contract with the agent;
//! the loader crate itself returns the lines and prints nothing).

pub use harness_loader::*;

use std::process::ExitCode;

/// A loader's `main` ends here: its failure's message on stderr, its code
/// as the exit.
pub fn finish(outcome: Result<(), Failure>) -> ExitCode {
    if let Err(failure) = &outcome {
        eprintln!("{}", failure.message);
    }
    harness_loader::exit_code(&outcome)
}

/// With the implementation attached: prints `attached_line` (what the
/// scenario waits for), waits for SIGINT or SIGTERM, then `detach`.
pub fn hold(
    attached_line: &str,
    detach: impl FnOnce() -> Result<(), Failure>,
) -> Result<(), Failure> {
    let stop = stop_requested()?;
    println!("{attached_line}");
    wait_for_stop(&stop);
    detach()
}

/// Reports every loaded program of `object` to the agent, one line each on
/// stderr (which the agent takes out of the step's output): its verifier
/// cost and how often it ran. Call it before detaching, when the runs are in.
pub fn report_programs(object: &libbpf_rs::Object) {
    for stats in program_stats(object) {
        eprintln!("{}", stats.render());
    }
}

/// [`harness_loader::struct_ops`], and its lines printed.
pub mod struct_ops {
    pub use harness_loader::struct_ops::*;

    use harness_loader::libbpf_rs::Object;
    use harness_loader::LoadFailure;

    /// Prints each program's runs so far, after `what` ([`runs_line`]).
    pub fn print_runs(object: &Object, what: &str, programs: &[&str]) {
        println!("{}", runs_line(object, what, programs));
    }

    /// Prints how a step the kernel must refuse came out ([`refusal_line`]).
    pub fn print_refusal<T>(what: &str, result: Result<T, i32>) {
        println!("{}", refusal_line(what, result));
    }

    /// Prints how a step that must succeed came out ([`done_line`]).
    pub fn print_done<T>(what: &str, result: Result<T, i32>) {
        println!("{}", done_line(what, result));
    }

    /// Prints how a load the verifier or libbpf must refuse came out
    /// ([`load_refusal_line`]).
    pub fn print_load_refusal(what: &str, loaded: Result<Object, LoadFailure>, needle: &str) {
        println!("{}", load_refusal_line(what, loaded, needle));
    }
}
