#!/usr/bin/env bash
# Runs CI steps in a long-lived Debian 12 container with the runner's
# /dev/kvm, the checkout at /work, the kernel cache and VM temp dirs on the
# runner (so actions/cache and upload-artifact see them).
#   debian-container.sh start         start it and install rustup's toolchain
#   debian-container.sh exec CMD...   run CMD in the checkout inside it
set -euo pipefail
name=struct-ops-ci
temp="${RUNNER_TEMP:-/tmp}"

case "${1:-}" in
  start)
    mkdir -p "$temp/struct-ops-cache"
    docker run -d --name "$name" --device /dev/kvm \
      -v "$PWD:/work" -w /work \
      -v "$temp/struct-ops-cache:/cache" -e STRUCT_OPS_CACHE_DIR=/cache \
      -v "$temp:/vmtmp" -e TMPDIR=/vmtmp \
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
    shift
    docker exec "$name" bash -c '. "$HOME/.cargo/env" && exec "$@"' bash "$@"
    ;;
  *)
    echo "usage: $0 start | exec CMD..." >&2
    exit 2
    ;;
esac
