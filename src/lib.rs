//! This package only owns the VM integration tests in `tests/`.
