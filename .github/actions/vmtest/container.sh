#!/usr/bin/env bash
# The Debian 12 container the action runs in: the runner's /dev/kvm, the
# workspace and the harness's sources at the paths they have on the runner
# (so every path means the same inside and out), the kernel cache and VM
# temp dirs on the runner (so actions/cache and upload-artifact see them).
#   container.sh start         start it and install rustup's toolchain and nextest
#   container.sh exec DIR CMD  run CMD in DIR inside it
set -euo pipefail
name=struct-ops-vmtest
temp="${RUNNER_TEMP:-/tmp}"
harness_root="$(cd "$(dirname "$0")/../../.." && pwd)"
workspace="${GITHUB_WORKSPACE:-$PWD}"

case "${1:-}" in
  start)
    mkdir -p "$temp/struct-ops-cache" "$temp/harness-target"
    docker run -d --name "$name" --device /dev/kvm \
      -v "$workspace:$workspace" -v "$harness_root:$harness_root" -w "$workspace" \
      -v "$temp/struct-ops-cache:/cache" -e STRUCT_OPS_CACHE_DIR=/cache \
      -v "$temp:/vmtmp" -e TMPDIR=/vmtmp \
      -v "$temp/harness-target:/harness-target" \
      -e HARNESS_MANIFEST="$harness_root/harness/Cargo.toml" \
      -e CI=true -e CARGO_TERM_COLOR=always \
      debian:12 sleep infinity
    docker exec "$name" bash -c '
      apt-get update -qq &&
      apt-get install -y -qq --no-install-recommends curl ca-certificates build-essential git &&
      curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c clippy,rustfmt &&
      . "$HOME/.cargo/env" &&
      cargo install --locked cargo-nextest'
    ;;
  exec)
    dir="$2"
    shift 2
    docker exec -w "$dir" "$name" bash -c '. "$HOME/.cargo/env" && exec "$@"' bash "$@"
    ;;
  *)
    echo "usage: $0 start | exec DIR CMD..." >&2
    exit 2
    ;;
esac
