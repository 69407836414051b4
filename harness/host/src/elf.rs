//! Asking an ELF file (vmlinux, a .ko) about its sections.

use std::path::Path;

use anyhow::{Context, Result};
use object::{Object, ObjectSection, Section, SectionFlags};

pub(crate) fn has_section(path: &Path, name: &str) -> Result<bool> {
    Ok(!section_names(path, |section| section.name() == Ok(name))?.is_empty())
}

/// The names of the sections of `path` that are loaded into memory.
pub(crate) fn alloc_sections(path: &Path) -> Result<Vec<String>> {
    section_names(
        path,
        |section| matches!(section.flags(), SectionFlags::Elf { sh_flags } if sh_flags & u64::from(object::elf::SHF_ALLOC) != 0),
    )
}

/// The names of the sections of `path` that `keep` accepts.
fn section_names(path: &Path, keep: impl Fn(&Section<'_, '_>) -> bool) -> Result<Vec<String>> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let file = object::File::parse(&*data)
        .with_context(|| format!("{} is not an ELF file", path.display()))?;
    Ok(file
        .sections()
        .filter(|section| keep(section))
        .filter_map(|section| section.name().ok().map(str::to_owned))
        .collect())
}
