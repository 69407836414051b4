#!/usr/bin/env bash
# The harness's command-line tool, built from the action's own sources into
# a target directory of its own, run in the current directory.
set -euo pipefail
exec env CARGO_TARGET_DIR=/harness-target cargo run --quiet --locked --manifest-path "$HARNESS_MANIFEST" -- "$@"
