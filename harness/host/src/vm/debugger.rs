//! Letting gdb in: a free local port for QEMU's gdb stub, the exact gdb
//! command line that connects and loads the modules' symbols where the
//! guest put them, and the word that lets the waiting agent go on.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;

use anyhow::{Context, Result};
use harness_wire::protocol::{ModuleSections, GO};
use harness_wire::shell::quote_words;

use super::Vm;

/// A local port nothing listens on now: never a fixed one, so that VMs run
/// side by side do not clash. (Another process could take it before QEMU
/// does; QEMU then fails to start and says so.)
pub(crate) fn free_port() -> Result<u16> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("finding a free local port for gdb")?;
    Ok(listener.local_addr()?.port())
}

/// A copy of the module with its sections' addresses set to where the guest
/// put them, and those sections. gdb relocates a module's debug info with
/// the addresses in the file, not the ones `add-symbol-file -s` gives it,
/// so with the file as built every variable's address would be off.
pub(crate) fn placed_copy(module: &ModuleSections, dir: &Path) -> Result<ModuleSections> {
    let in_file = crate::elf::alloc_sections(Path::new(&module.path))?;
    let sections: Vec<(String, u64)> = module
        .sections
        .iter()
        .filter(|(name, _)| in_file.contains(name))
        .cloned()
        .collect();
    let placed = dir.join(format!("{}.placed.ko", module.name));
    let mut args: Vec<String> = Vec::new();
    for (name, address) in &sections {
        args.push("--change-section-address".to_owned());
        args.push(format!("{name}={address:#x}"));
    }
    args.push(module.path.clone());
    args.push(placed.display().to_string());
    duct::cmd("objcopy", &args)
        .stdout_null()
        .stderr_null()
        .run()
        .with_context(|| format!("placing {} for gdb (objcopy is in binutils)", module.path))?;
    Ok(ModuleSections {
        name: module.name.clone(),
        path: placed.display().to_string(),
        sections,
    })
}

/// `gdb -ex 'target remote ...' -ex 'add-symbol-file ...' vmlinux`.
pub(crate) fn gdb_command(
    vmlinux: &Path,
    build_dir: &Path,
    port: u16,
    modules: &[ModuleSections],
) -> String {
    let mut words = vec![
        "gdb".to_owned(),
        // The kernel's lx-* commands, from the build directory.
        "-iex".to_owned(),
        format!("add-auto-load-safe-path {}", build_dir.display()),
        "-ex".to_owned(),
        format!("target remote 127.0.0.1:{port}"),
    ];
    for module in modules {
        words.push("-ex".to_owned());
        words.push(add_symbol_file(module));
    }
    words.push(vmlinux.display().to_string());
    quote_words(&words)
}

/// `add-symbol-file <ko> <.text> -s .data <addr> ...`, every placed section.
fn add_symbol_file(module: &ModuleSections) -> String {
    let text = module
        .sections
        .iter()
        .find(|(name, _)| name == ".text")
        .map_or(0, |(_, address)| *address);
    let mut command = format!("add-symbol-file {} {text:#x}", module.path);
    for (name, address) in &module.sections {
        if name != ".text" {
            command.push_str(&format!(" -s {name} {address:#x}"));
        }
    }
    command
}

impl Vm {
    /// QEMU is paused: say so, and how to connect.
    pub(super) fn announce_debugger(&self, modules: &[ModuleSections]) {
        let Some(port) = self.spec.gdb_port else {
            return;
        };
        let kernel = &self.kernel_for_gdb;
        let placed: Vec<ModuleSections> = modules
            .iter()
            .map(|module| {
                placed_copy(module, self.logs.path()).unwrap_or_else(|err| {
                    tracing::warn!("{err:#}; gdb may place the module's variables wrongly");
                    module.clone()
                })
            })
            .collect();
        let command = gdb_command(&kernel.0, &kernel.1, port, &placed);
        // A shell's terminal is raw: a line feed alone would not return the carriage.
        let (nl, cr) = match self.options.interactive {
            true => ("\r\n", "\r"),
            false => ("\n", ""),
        };
        tracing::info!(
            "the VM is paused for the debugger (gdb stub on 127.0.0.1:{port}); \
             connect with:{nl}{command}{nl}[harness] the guest goes on when gdb continues or detaches{cr}"
        );
        // A test or a script can read it from here too.
        let _ = std::fs::write(self.logs.path().join("gdb.command"), format!("{command}\n"));
    }

    /// Connects to the control port as soon as QEMU is up: a guest reading
    /// a port nobody is connected to gets an end of file, not a wait.
    pub(super) fn connect_control(&mut self) -> Result<()> {
        let Some(socket) = self.spec.control_socket.clone() else {
            return Ok(());
        };
        let stream = UnixStream::connect(&socket)
            .with_context(|| format!("connecting to {}", socket.display()))?;
        self.control = Some(stream);
        Ok(())
    }

    /// Lets the waiting agent go on; it reads this once gdb resumes the VM.
    /// The connection stays open for the VM's life: closing it could reach
    /// the guest before the word does.
    pub(super) fn say_go(&mut self) -> Result<()> {
        let stream = self
            .control
            .as_mut()
            .context("no control connection to answer the agent on")?;
        writeln!(stream, "{GO}").context("telling the agent to go on")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gdb_command_loads_each_section_where_the_guest_put_it() {
        let module = ModuleSections {
            name: "demo".into(),
            path: "/c/kmod/1/demo.ko".into(),
            sections: vec![
                (".bss".into(), 0xffff_ffff_c000_3000),
                (".data".into(), 0xffff_ffff_c000_2000),
                (".text".into(), 0xffff_ffff_c000_0000),
            ],
        };
        let command = gdb_command("/k/vmlinux".as_ref(), "/k".as_ref(), 41234, &[module]);
        assert_eq!(
            command,
            "gdb -iex 'add-auto-load-safe-path /k' -ex 'target remote 127.0.0.1:41234' \
             -ex 'add-symbol-file /c/kmod/1/demo.ko 0xffffffffc0000000 \
             -s .bss 0xffffffffc0003000 -s .data 0xffffffffc0002000' /k/vmlinux"
        );
        assert!(free_port().unwrap() > 0);
    }
}
