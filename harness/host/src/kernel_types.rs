//! A subject that implements a struct_ops type the kernel defines runs only
//! on a kernel that has the type: refused before any VM boots (before any
//! build, for a series older than the type), naming the option and the
//! first series that has it.

use anyhow::Result;
use harness_wire::kernel_type::KernelType;

use crate::catalogue::Catalogue;
use crate::kernel::{Kernel, Series};

/// Why a kernel cannot run a subject's type.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum TypeError {
    /// The series is older than the type.
    #[error(
        "{subject} implements {kernel_type}, which the kernel has from {first} on ({option}); \
         kernel {series} is older. Run it on {first} or later (`--kernel {first}`, the default \
         kernel, has it)"
    )]
    TooOld {
        /// The subject.
        subject: String,
        /// Its type.
        kernel_type: KernelType,
        /// The option that defines the type.
        option: &'static str,
        /// The first series with it.
        first: &'static str,
        /// The series asked for.
        series: String,
    },
    /// The kernel was built without the type's option.
    #[error(
        "{subject} implements {kernel_type}, and kernel {version} ({key}) was built without \
         {option}: add `{option}=y` to its configuration (the harness's own kernels have it \
         from {first} on: harness/host/images/)"
    )]
    NotBuiltIn {
        /// The subject.
        subject: String,
        /// Its type.
        kernel_type: KernelType,
        /// The option that defines the type.
        option: &'static str,
        /// The first series with it.
        first: &'static str,
        /// The kernel's version.
        version: String,
        /// Its cache key.
        key: String,
    },
}

/// Every subject's type exists in `series`, before anything is built.
pub(crate) fn check_series(series: &Series, catalogue: &Catalogue) -> Result<()> {
    for subject in &catalogue.subjects {
        let Some(kernel_type) = subject.info.kernel_type else {
            continue;
        };
        let (option, first) = kernel_type.requires();
        let too_old = Series::parse(first).is_some_and(|first| *series < first);
        if too_old {
            return Err(TypeError::TooOld {
                subject: subject.info.name.clone(),
                kernel_type,
                option,
                first,
                series: series.to_string(),
            }
            .into());
        }
    }
    Ok(())
}

/// Every subject's type is built into `kernel` (its `.config`).
pub(crate) fn check_config(kernel: &Kernel, catalogue: &Catalogue) -> Result<()> {
    let config = std::fs::read_to_string(kernel.build_dir.join(".config")).unwrap_or_default();
    for subject in &catalogue.subjects {
        let Some(kernel_type) = subject.info.kernel_type else {
            continue;
        };
        let (option, first) = kernel_type.requires();
        if !has_option(&config, option) {
            return Err(TypeError::NotBuiltIn {
                subject: subject.info.name.clone(),
                kernel_type,
                option,
                first,
                version: kernel.version.clone(),
                key: kernel.key.clone(),
            }
            .into());
        }
    }
    Ok(())
}

fn has_option(config: &str, option: &str) -> bool {
    config
        .lines()
        .any(|line| line.strip_prefix(option) == Some("=y"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::Subject;
    use harness_wire::catalogue::SubjectInfo;

    fn catalogue(kernel_type: Option<KernelType>) -> Catalogue {
        Catalogue {
            subjects: vec![Subject {
                info: SubjectInfo {
                    name: "sched".into(),
                    summary: String::new(),
                    module: None,
                    scenarios: Vec::new(),
                    fragments: Vec::new(),
                    snapshots: "/s".into(),
                    normalise: Vec::new(),
                    kernel_type,
                    ..SubjectInfo::default()
                },
                binary: "/b".into(),
            }],
        }
    }

    #[test]
    fn a_scheduler_on_a_kernel_older_than_sched_ext_is_refused_naming_the_first_series() {
        let sched = catalogue(Some(KernelType::SchedExtOps));
        let err = check_series(&Series::parse("6.1").unwrap(), &sched)
            .unwrap_err()
            .to_string();
        assert!(err.contains("CONFIG_SCHED_CLASS_EXT"), "{err}");
        assert!(err.contains("from 6.12 on"), "{err}");
        assert!(check_series(&Series::parse("6.12").unwrap(), &sched).is_ok());
        assert!(check_series(&Series::parse("6.1").unwrap(), &catalogue(None)).is_ok());
    }

    #[test]
    fn the_option_is_read_from_the_config() {
        assert!(has_option(
            "CONFIG_A=y\nCONFIG_SCHED_CLASS_EXT=y\n",
            "CONFIG_SCHED_CLASS_EXT"
        ));
        assert!(!has_option(
            "# CONFIG_SCHED_CLASS_EXT is not set\n",
            "CONFIG_SCHED_CLASS_EXT"
        ));
        assert!(!has_option(
            "CONFIG_SCHED_CLASS_EXTRA=y\n",
            "CONFIG_SCHED_CLASS_EXT"
        ));
    }
}
