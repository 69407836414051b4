//! Asking an ELF file (vmlinux, a .ko) whether it carries a section.

use std::path::Path;

use anyhow::{Context, Result};
use object::{Object, ObjectSection};

pub fn has_section(path: &Path, name: &str) -> Result<bool> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let file = object::File::parse(&*data)
        .with_context(|| format!("{} is not an ELF file", path.display()))?;
    Ok(file.sections().any(|section| section.name() == Ok(name)))
}
