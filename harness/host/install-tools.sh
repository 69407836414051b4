#!/usr/bin/env bash
# Installs the tools the harness needs beyond Debian's packages (which
# `harness setup` installs first, see harness/host/src/setup/apt.rs): the
# Rust virtiofsd and a virtualenv of Python tools. `harness setup` runs it
# (and `harness run`, `harness build` and the nextest setup script run
# `harness setup` when something is missing).
# With --check it installs nothing: it names what is missing and exits 1.
set -euo pipefail
check_only=false
[ "${1:-}" = "--check" ] && check_only=true

# The guest's root is the host's, shared read-only. Debian 12 ships only the
# old C virtiofsd, which cannot share read-only; the Rust one (crates.io) can.
# Without it the harness falls back to 9p, so by hand a failure here is only a
# warning; in CI it is an error, so the virtiofs path is never silently untested.
has_readonly_virtiofsd() {
  local candidate
  # The same places harness/host/src/virtiofsd.rs looks.
  for candidate in "${STRUCT_OPS_VIRTIOFSD:-}" "$(command -v virtiofsd || true)" "$HOME/.cargo/bin/virtiofsd" /usr/libexec/virtiofsd; do
    [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" --help 2>&1 | grep -q -- --readonly && return 0
  done
  return 1
}
in_ci() { [ -n "${CI:-}" ] && [ "${CI}" != "false" ]; }
if $check_only && ! has_readonly_virtiofsd && in_ci; then
  echo "missing: a virtiofsd with --readonly (CI needs the virtiofs path)" >&2
  exit 1
fi
if ! $check_only && ! has_readonly_virtiofsd; then
  if command -v cargo >/dev/null; then
    echo "Installing the Rust virtiofsd (cargo install virtiofsd, about a minute)" >&2
    cargo install --quiet --locked virtiofsd@1.14.0 >&2 || true
  fi
  if ! has_readonly_virtiofsd; then
    if in_ci; then
      echo "error: no virtiofsd with --readonly, and \`cargo install --locked virtiofsd@1.14.0\` failed" >&2
      exit 1
    fi
    echo "warning: no virtiofsd with --readonly (cargo install virtiofsd failed); VMs will share the root over 9p" >&2
  fi
fi

# Python tools, pinned, in a virtualenv in the cache: virtme-ng (vng, for
# manual debugging and its test) and check-jsonschema (validates the CI workflow).
cache="${STRUCT_OPS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/struct-ops-vmtest}"
venv="$cache/venv"
python_tools=(virtme-ng==1.42 check-jsonschema==0.39.0)
stamp="$venv/.installed"
if $check_only; then
  if [ "$(cat "$stamp" 2>/dev/null)" != "${python_tools[*]}" ]; then
    echo "missing: ${python_tools[*]} in $venv" >&2
    exit 1
  fi
  exit 0
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "${python_tools[*]}" ]; then
  echo "Installing ${python_tools[*]} into $venv" >&2
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${python_tools[@]}" >&2
  echo "${python_tools[*]}" > "$stamp"
fi
