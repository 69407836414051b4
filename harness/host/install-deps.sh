#!/usr/bin/env bash
# Installs the Debian packages the harness needs, and only the missing ones:
# `harness setup` runs it (and `harness run`, `harness build` and the nextest
# setup script run `harness setup` when something is missing); so does .ci/run.
# As root it runs apt-get; otherwise it prints the exact command and fails.
# With --check it installs nothing: it names what is missing and exits 1.
set -euo pipefail
check_only=false
[ "${1:-}" = "--check" ] && check_only=true

packages=(
  # The VM.
  qemu-system-x86
  # The default kernel source: Debian's 6.12 tarball under /usr/src; 6.1 is
  # the real "too old for struct_ops in modules" input of a test.
  linux-source-6.12 linux-source-6.1
  # Building that kernel with BTF.
  make gcc flex bison bc libelf-dev libssl-dev dwarves xz-utils
  # The out-of-tree module.
  kmod
  # The BPF program (clang -target bpf) and libbpf, vendored by libbpf-sys.
  clang llvm libelf-dev zlib1g-dev pkg-config linux-libc-dev
  # virtme-ng (installed below into a virtualenv) for manual debugging with
  # vng; its guest init needs udev to name the virtio ports it talks over.
  python3-venv udev
  # Building the Rust virtiofsd (below).
  libcap-ng-dev libseccomp-dev
  # Stepping into the VM: bpftool to run there (harness exec), gdb for
  # --gdb, and tmux, which the shell's test types into.
  bpftool gdb tmux
)

installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'
}

missing=()
for package in "${packages[@]}"; do
  installed "$package" || missing+=("$package")
done
# The same package may be listed twice above, once for each reason it is needed.
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | awk 'NF && !seen[$0]++')

if $check_only && [ ${#missing[@]} -gt 0 ]; then
  echo "missing Debian packages: ${missing[*]}" >&2
  exit 1
fi
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "Missing Debian packages: ${missing[*]}" >&2
    echo "Install them with:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "Installing missing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

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
