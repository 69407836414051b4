//! virtme-ng, the alternative way into the harness's kernel: the same
//! kernel, module and agent, booted by vng from the virtualenv that
//! `harness setup` made, with the agent as a plain command.

use harness_wire::cli::AgentCommand;
use harness_wire::roles;
use harness_wire::shell::quote_words;

use crate::accel::{self, Accel, Choice};
use crate::artifacts::Artifacts;

/// The vng command that runs `scenario` by hand.
pub fn vng_command(artifacts: &Artifacts, scenario: &str) -> anyhow::Result<String> {
    let agent = AgentCommand::Run(artifacts.run_args(scenario, None)?);
    let binary = artifacts.binary_for(scenario)?;
    let mut words = vec![binary.display().to_string(), roles::AGENT.to_owned()];
    words.extend(agent.argv());
    Ok(vng_running(artifacts, &quote_words(&words)))
}

/// virtme-ng booting the harness's kernel and running `command` in it. vng is
/// told to avoid KVM where the harness found KVM broken, or it would hang
/// the same way.
pub(crate) fn vng_running(artifacts: &Artifacts, command: &str) -> String {
    let kvm = match accel::choose(&artifacts.cache) {
        Ok(Choice::Decided(Accel::Tcg, _)) => " --disable-kvm",
        _ => "",
    };
    format!(
        "PATH={bin}:$PATH vng{kvm} --run {kernel} --exec \"{command}\"",
        bin = crate::paths::venv_in(&artifacts.cache)
            .join("bin")
            .display(),
        kernel = artifacts.kernel.bzimage.display(),
    )
}
