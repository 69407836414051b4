//! What the agent wrote to its result port: one JSON message per line, of
//! which only complete lines count.

use std::path::Path;

use harness_wire::protocol::Message;

/// Every complete message so far, or why a line is not one.
pub(crate) fn read_messages(path: &Path) -> Result<Vec<Message>, String> {
    parse_messages(&std::fs::read_to_string(path).unwrap_or_default())
}

pub(crate) fn parse_messages(text: &str) -> Result<Vec<Message>, String> {
    let Some((complete, _partial)) = text.rsplit_once('\n') else {
        return Ok(Vec::new());
    };
    complete
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).map_err(|err| format!("{err}: {line}")))
        .collect()
}

/// The last message that is a result (a scenario's, or a command's end),
/// not a request for a debugger.
pub(crate) fn final_message(messages: &[Message]) -> Option<&Message> {
    messages
        .iter()
        .rev()
        .find(|message| !matches!(message, Message::WaitingForDebugger { .. }))
}

/// `: <the panic line>` from the console, when there is one.
pub(crate) fn panic_detail(console: &str) -> String {
    harness_wire::markers::panic_line(console)
        .map(|line| format!(": {}", line.trim()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use harness_wire::protocol::{ExitReport, ScenarioResult};

    #[test]
    fn a_message_counts_once_its_line_is_complete() {
        let result = Message::Scenario(ScenarioResult {
            scenario: "attach".into(),
            passed: true,
            ..ScenarioResult::default()
        });
        let line = result.to_json();
        assert_eq!(parse_messages(&line[..line.len() / 2]), Ok(vec![]));
        assert_eq!(parse_messages(&line), Ok(vec![]), "no newline yet");
        assert_eq!(
            parse_messages(&format!("{line}\n")),
            Ok(vec![result.clone()])
        );
        assert!(parse_messages("{not json\n").is_err());
    }

    #[test]
    fn a_shell_after_a_scenario_ends_with_the_shells_exit() {
        let scenario = Message::Scenario(ScenarioResult::default());
        let exited = Message::Exited(ExitReport {
            code: Some(0),
            ..ExitReport::default()
        });
        let messages = [
            Message::WaitingForDebugger {
                modules: Vec::new(),
            },
            scenario.clone(),
            exited.clone(),
        ];
        assert_eq!(final_message(&messages), Some(&exited));
        assert_eq!(final_message(&messages[..2]), Some(&scenario));
        assert_eq!(final_message(&messages[..1]), None);
    }

    #[test]
    fn the_panic_detail_is_the_panic_line() {
        let console = "[ 1.0] ok\n[ 1.2] Kernel panic - not syncing: Attempted to kill init!\n";
        assert_eq!(
            panic_detail(console),
            ": [ 1.2] Kernel panic - not syncing: Attempted to kill init!"
        );
        assert_eq!(panic_detail("all quiet\n"), "");
    }
}
