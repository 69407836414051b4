//! The scenarios, by name. The agent implements them; the host lists and runs them.

/// A scenario's name and what it proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScenarioInfo {
    pub name: &'static str,
    pub summary: &'static str,
    /// Whether the module is loaded before the scenario starts.
    pub needs_module: bool,
}

pub const SCENARIOS: &[ScenarioInfo] = &[
    ScenarioInfo {
        name: "attach",
        summary: "load and attach the BPF implementation; the module logs its registration",
        needs_module: true,
    },
    ScenarioInfo {
        name: "trigger",
        summary: "write to the proc file: test_1 returns 42, test_2(10, 20) returns 30, test_3 sees the buffer",
        needs_module: true,
    },
    ScenarioInfo {
        name: "detach",
        summary: "attach, trigger, detach; the module logs unregistration and a later trigger finds no ops",
        needs_module: true,
    },
    ScenarioInfo {
        name: "second_attach",
        summary: "a second attach while one is attached is refused with EEXIST; the first keeps working",
        needs_module: true,
    },
    ScenarioInfo {
        name: "cycles",
        summary: "100 attach/trigger/detach cycles, every one checked",
        needs_module: true,
    },
    ScenarioInfo {
        name: "unload_while_attached",
        summary: "unloading the module while attached is refused; after detach it unloads",
        needs_module: true,
    },
    ScenarioInfo {
        name: "sigkill_loader",
        summary: "the loader killed with SIGKILL while attached: the link goes and the module unloads",
        needs_module: true,
    },
    ScenarioInfo {
        name: "verifier_reject",
        summary: "a program calling a helper the ops do not hand out fails to load, with the verifier's reason",
        needs_module: true,
    },
    ScenarioInfo {
        name: "no_module",
        summary: "trigger and attach with no module loaded: the loader says so and how to fix it",
        needs_module: false,
    },
    ScenarioInfo {
        name: "ctx_write_rejected",
        summary: "a program that writes its context (the kernel's arguments) fails to load, with the verifier's reason",
        needs_module: true,
    },
    ScenarioInfo {
        name: "long_message",
        summary: "a 100-byte write: one call of each op, the message cut to the module's 63 bytes",
        needs_module: true,
    },
    ScenarioInfo {
        name: "concurrent_attach",
        summary: "4 loader processes attach at once, 20 rounds: each round exactly one registers, the rest get EEXIST",
        needs_module: true,
    },
    ScenarioInfo {
        name: "release_race",
        summary: "triggers race fresh skeletons loaded, attached, detached and freed; rmmod attempts race them and are refused",
        needs_module: true,
    },
    ScenarioInfo {
        name: "tutorial_loader",
        summary: "the tutorial's loader: attach, a trigger, two periodic triggers, Ctrl-C, a clean detach",
        needs_module: true,
    },
    ScenarioInfo {
        name: "stress",
        summary: "triggers from many threads while attach/detach loops run: no oops, no splat",
        needs_module: true,
    },
];

pub fn find(name: &str) -> Option<&'static ScenarioInfo> {
    SCENARIOS.iter().find(|info| info.name == name)
}

pub fn names() -> impl Iterator<Item = &'static str> {
    SCENARIOS.iter().map(|info| info.name)
}
