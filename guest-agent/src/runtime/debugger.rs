//! Meeting a debugger: once the modules are loaded, where their sections are
//! goes to the host (which pauses QEMU and prints the gdb command that
//! loads their symbols at those addresses), and the agent waits for it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::ports::HostLink;
use harness_wire::protocol::{Message, ModuleSections};

/// The sections of a loaded module, from /sys/module/NAME/sections.
pub(crate) fn module_sections(name: &str, path: &Path) -> Result<ModuleSections> {
    let dir = Path::new("/sys/module").join(name).join("sections");
    let mut sections = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let section = entry.file_name().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        let hex = text.trim().trim_start_matches("0x");
        if let Ok(address) = u64::from_str_radix(hex, 16) {
            // Sections the kernel did not place (address 0) are of no use to gdb.
            if address != 0 {
                sections.push((section, address));
            }
        }
    }
    sections.sort();
    Ok(ModuleSections {
        name: name.to_owned(),
        path: path.display().to_string(),
        sections,
    })
}

/// Tells the host where the modules are and waits until it says go.
pub(crate) fn meet(link: &mut HostLink, modules: &[PathBuf]) -> Result<()> {
    let modules = modules
        .iter()
        .map(|path| module_sections(&super::module::module_name(path), path))
        .collect::<Result<Vec<_>>>()?;
    link.send(&Message::WaitingForDebugger { modules })?;
    link.wait_for_go()
}
