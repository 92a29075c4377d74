#!/usr/bin/env bash
# Builds real MicroPython v1.27.0 binaries with edgecore frozen in, from the vendored
# source tarball, cached under .cache/micropython/ (git-ignored):
#
#   firmware/micropython/build.sh [mpy-cross] [unix] [qemu] ...   (no argument: all three)
#
#   mpy-cross  the cross-compiler of that source tree
#   unix       the unix port as a 32-bit binary (object sizes as on ESP32/RP2040), TLS by
#              mbedtls, edgecore frozen through firmware/micropython/manifest.py
#              -> .cache/micropython/bin/micropython32
#   qemu       the bare-metal qemu port, board MPS2_AN385 (Cortex-M3, single-precision
#              floats, -Werror), a 64 KiB heap, edgecore frozen through the same manifest
#              plus the core's plain tests (tests/micropython/qemu_manifest.py)
#              -> .cache/micropython/bin/qemu-mps2-an385.elf
#
# Each target is rebuilt only when one of its inputs changed (the tarball, this script,
# the manifests, a frozen source: a hash of them is kept next to the binary); then make
# runs incrementally in the cached tree. A new tarball means a fresh extraction.
# Environment: MICROPYTHON_TARBALL (default ../shared/vendor/micropython-1.27.0-src.tar.xz
# next to the repository), EDGECORE_MP_CACHE (default .cache/micropython), JOBS (make -j).
# Missing compilers are installed with apt-get (root only): gcc-multilib for the 32-bit
# unix build; gcc-arm-none-eabi, libnewlib-arm-none-eabi, qemu-system-arm for qemu.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
# The vendored source sits in shared/vendor/ beside the checkout (../shared), or one level
# further up for a clone made inside the workspace; MICROPYTHON_TARBALL overrides both.
tarball=${MICROPYTHON_TARBALL:-}
if [ -z "$tarball" ]; then
  for dir in "$root/../shared" "$root/../../shared"; do
    tarball=$dir/vendor/micropython-1.27.0-src.tar.xz
    [ -f "$tarball" ] && break
  done
fi
cache=${EDGECORE_MP_CACHE:-$root/.cache/micropython}
jobs=${JOBS:-$(nproc 2>/dev/null || echo 2)}
QEMU_HEAP=65536

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(mpy-cross unix qemu)
for t in "${targets[@]}"; do
  case "$t" in mpy-cross|unix|qemu) ;; *) echo "build.sh: unknown target $t" >&2; exit 2 ;; esac
done
[ -f "$tarball" ] || { echo "build.sh: no MicroPython source at $tarball (set MICROPYTHON_TARBALL)" >&2; exit 1; }
mkdir -p "$cache/bin"
# The cache may sit inside a git checkout: keep MicroPython's version header from
# describing that repository (it falls back to the tarball's v1.27.0).
export GIT_CEILING_DIRECTORIES=$cache/src

apt_updated=
need_packages() {  # need_packages "check command" pkg...
  local check=$1; shift
  if ! eval "$check" >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || { echo "build.sh: needs $* (apt-get install as root)" >&2; exit 1; }
    [ -n "$apt_updated" ] || { apt-get update -qq; apt_updated=1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  fi
}

# -- the source tree, extracted once per tarball ------------------------------------------
tar_sum=$(sha256sum "$tarball" | cut -d' ' -f1)
src=$cache/src/micropython-1.27.0
if [ "$(cat "$cache/src/.tarball" 2>/dev/null)" != "$tar_sum" ]; then
  echo "build.sh: extracting $(basename "$tarball")"
  rm -rf "$cache/src"
  mkdir -p "$cache/src"
  tar -xJf "$tarball" -C "$cache/src"
  echo "$tar_sum" > "$cache/src/.tarball"
fi

# A hash of everything a target is built from: skip make entirely when it is unchanged.
inputs_hash() {
  { echo "$tar_sum"; cat "$0" "$@"; } | sha256sum | cut -d' ' -f1
}
frozen_sources=("$root"/firmware/micropython/manifest.py "$root"/edgecore/*.py "$root"/ports/*.py)

build() {  # build NAME OUTPUT HASH COMMAND...
  local name=$1 out=$2 hash=$3; shift 3
  if [ -f "$out" ] && [ "$(cat "$out.inputs" 2>/dev/null)" = "$hash" ]; then
    echo "$name: up to date ($out)"
    return
  fi
  local t0=$SECONDS
  local log=$cache/$name.log
  if ! "$@" > "$log" 2>&1; then
    tail -40 "$log" >&2
    echo "build.sh: $name failed (full log: $log)" >&2
    exit 1
  fi
  echo "$hash" > "$out.inputs"
  echo "$name: built in $((SECONDS - t0)) s ($out)"
}

# (These run under "if !", where set -e is off: every step is chained with &&.)
mpy_cross() {
  make -C "$src/mpy-cross" -j"$jobs"
}

unix32() {
  make -C "$src/ports/unix" -j"$jobs" VARIANT=standard MICROPY_FORCE_32BIT=1 MICROPY_PY_FFI=0 \
    BUILD=build-edgecore32 FROZEN_MANIFEST="$root/firmware/micropython/manifest.py" &&
  cp "$src/ports/unix/build-edgecore32/micropython" "$cache/bin/micropython32"
}

qemu() {
  make -C "$src/ports/qemu" -j"$jobs" BOARD=MPS2_AN385 MICROPY_HEAP_SIZE=$QEMU_HEAP \
    BUILD=build-edgecore FROZEN_MANIFEST="$root/tests/micropython/qemu_manifest.py" &&
  cp "$src/ports/qemu/build-edgecore/firmware.elf" "$cache/bin/qemu-mps2-an385.elf"
}

for t in "${targets[@]}"; do
  case "$t" in
    mpy-cross)
      build mpy-cross "$src/mpy-cross/build/mpy-cross" "$(inputs_hash)" mpy_cross ;;
    unix)
      need_packages "echo 'int main(void){return 0;}' | gcc -m32 -x c - -o /dev/null" gcc-multilib
      build mpy-cross "$src/mpy-cross/build/mpy-cross" "$(inputs_hash)" mpy_cross
      build unix32 "$cache/bin/micropython32" "$(inputs_hash "${frozen_sources[@]}")" unix32 ;;
    qemu)
      need_packages "command -v arm-none-eabi-gcc && test -f /usr/lib/arm-none-eabi/include/stdio.h" \
        gcc-arm-none-eabi libnewlib-arm-none-eabi
      need_packages "command -v qemu-system-arm" qemu-system-arm
      build mpy-cross "$src/mpy-cross/build/mpy-cross" "$(inputs_hash)" mpy_cross
      build qemu "$cache/bin/qemu-mps2-an385.elf" \
        "$(inputs_hash "${frozen_sources[@]}" "$root"/tests/micropython/qemu_manifest.py \
           "$root"/tests/micropython/mp_runner.py "$root"/tests/test_*.py "$root"/tests/data/*.py)" qemu ;;
  esac
done
