#!/usr/bin/env bash
# `make build`: the four Lambda bootstraps, built with cargo-lambda (zig as
# the cross linker, both from PyPI in .venv) exactly as `sam build` builds
# them, so that `make deploy` finds them fresh:
#   cargo lambda build --release --arm64 --bin batchq-<name>   (in the workspace root)
# Output: target/lambda/batchq-<name>/bootstrap. Prints each binary's size
# and architecture, and records the architecture for `make deploy`.
#
# ARCH=arm64 (default) or x86_64. For arm64 the Rust target
# aarch64-unknown-linux-gnu is added with rustup when missing; when that is
# not possible the script says so, builds x86_64 instead and tells how to
# deploy those (Architecture=x86_64).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
venv=${VENV:-.venv}
case $venv in /*) ;; *) venv=$root/$venv ;; esac
# cargo finds the cargo-lambda subcommand on PATH; cargo-lambda finds zig
# through `python3 -m ziglang`, so the venv's python must come first.
export PATH="$venv/bin:$PATH"
cd "$root"

bins=(batchq-enqueue batchq-submit batchq-poll batchq-ingest batchq-deliver)
arch=${ARCH:-arm64}
fell_back=
say() { printf 'build: %s\n' "$*"; }
warn() { printf '\nbuild: WARNING: %s\n' "$*" >&2; }

case $arch in
  arm64 | x86_64) ;;
  *) echo "build: ARCH must be arm64 or x86_64, not '$arch'" >&2; exit 2 ;;
esac

if ! cargo lambda --version >/dev/null 2>&1; then
  echo "build: cargo-lambda is not installed in $venv (make build installs it; run 'make build', not this script)" >&2
  exit 2
fi

if [ "$arch" = arm64 ]; then
  target=aarch64-unknown-linux-gnu
  if ! command -v rustup >/dev/null 2>&1; then
    warn "rustup is not installed, so the Rust target $target cannot be added
         (this Rust toolchain did not come from rustup)."
    arch=x86_64
  elif ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
    say "adding the Rust target $target (rustup target add $target)"
    if ! rustup target add "$target"; then
      warn "'rustup target add $target' failed (see its message above):
         no arm64 build is possible on this machine."
      arch=x86_64
    fi
  fi
  if [ "$arch" = x86_64 ]; then
    fell_back="the aarch64 target could not be had: these are x86_64 binaries; deploy them with 'make deploy ARCH=x86_64' (template parameter Architecture=x86_64)"
    cat >&2 <<EOF
build: building x86_64 binaries instead. They run on Lambda only with the
build: template parameter Architecture=x86_64 (Graviton arm64 is ~20% cheaper
build: per GB-second). Deploy them with:
build:     make deploy ARCH=x86_64
build: (make deploy reads the architecture of the last build by itself.)

EOF
  fi
fi

flag=--arm64
machine=183 # ELF e_machine: EM_AARCH64
if [ "$arch" = x86_64 ]; then
  flag=--x86-64
  machine=62 # EM_X86_64
fi

start=$(date +%s)
for bin in "${bins[@]}"; do
  say "cargo lambda build --release $flag --bin $bin"
  cargo lambda build --release "$flag" --bin "$bin"
done
echo "$arch" >target/lambda/.arch
elapsed=$(($(date +%s) - start))

echo
say "done in $((elapsed / 60)) min $((elapsed % 60)) s; Lambda architecture: $arch"
printf '%-16s %-8s %12s %9s  %s\n' binary arch bytes MiB path
status=0
for bin in "${bins[@]}"; do
  path=target/lambda/$bin/bootstrap
  if [ ! -f "$path" ]; then
    echo "build: $path is missing" >&2
    status=1
    continue
  fi
  bytes=$(wc -c <"$path")
  got=$(od -An -tu2 -j18 -N2 "$path" | tr -d ' ')
  if [ "$got" != "$machine" ]; then
    echo "build: $path is not a $arch ELF binary (e_machine $got)" >&2
    status=1
  fi
  printf '%-16s %-8s %12d %9s  %s\n' "$bin" "$arch" "$bytes" "$(awk -v b="$bytes" 'BEGIN{printf "%.1f", b/1048576}')" "$path"
done
if [ -n "$fell_back" ]; then
  warn "$fell_back"
fi
exit $status
