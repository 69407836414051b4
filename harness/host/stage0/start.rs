//! The contract between the harness and the guest's first program after a
//! restore (`stage0`): the port it waits on, the line it announces itself
//! with, and the one line the host sends it. Std only: this file is also
//! compiled into `stage0`, a static binary built with `rustc` alone.

/// The virtio-serial port the host sends the start line on.
pub const START_PORT_NAME: &str = "agent-start";
/// What `stage0` prints on the console once it waits for its start line:
/// the template is ready to be saved.
pub const TEMPLATE_READY: &str = "harness-stage0: template ready";
/// How `stage0` begins the console line that says why it failed.
pub const STAGE0_ERROR: &str = "harness-stage0: error: ";
/// The 9p tag of the host's root, which `stage0` mounts after a restore.
pub const ROOT_TAG: &str = "/dev/root";
/// The bytes of entropy each restored guest is given.
pub const ENTROPY_BYTES: usize = 64;

/// What a restored guest is told: the host's time, fresh entropy, and the
/// program to run as PID 1 with its arguments (the agent and its command).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartLine {
    /// The host's wall clock, in nanoseconds since the epoch.
    pub realtime_ns: u64,
    /// Random bytes for the guest's RNG, so no two clones share its state.
    pub entropy: Vec<u8>,
    /// The program `stage0` execs, a path under the host's root.
    pub init: String,
    /// Its arguments (after its own name).
    pub args: Vec<String>,
}

impl StartLine {
    /// One line: space-separated words, each hex-encoded (a word may hold
    /// spaces), ending in a newline.
    pub fn encode(&self) -> String {
        let mut words = vec![self.realtime_ns.to_string(), hex(&self.entropy)];
        words.push(hex(self.init.as_bytes()));
        words.extend(self.args.iter().map(|arg| hex(arg.as_bytes())));
        let mut line = words.join(" ");
        line.push('\n');
        line
    }

    /// The line `encode` wrote (without or with its newline).
    pub fn decode(line: &str) -> Result<StartLine, String> {
        let mut words = line.trim_end_matches('\n').split(' ');
        let mut next = |what: &str| words.next().ok_or(format!("the start line has no {what}"));
        let realtime_ns = next("time")?
            .parse()
            .map_err(|err| format!("the start line's time: {err}"))?;
        let entropy = unhex(next("entropy")?)?;
        let init = text(next("program")?)?;
        let args = words.map(text).collect::<Result<_, _>>()?;
        Ok(StartLine {
            realtime_ns,
            entropy,
            init,
            args,
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn unhex(word: &str) -> Result<Vec<u8>, String> {
    if !word.len().is_multiple_of(2) || !word.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("not a hex word: {word:?}"));
    }
    (0..word.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&word[at..at + 2], 16).map_err(|err| err.to_string()))
        .collect()
}

fn text(word: &str) -> Result<String, String> {
    String::from_utf8(unhex(word)?).map_err(|err| format!("a start line word: {err}"))
}
