#!/usr/bin/env bash
# Cross-compile lts for an ARM board on an x86-64 Debian 12 host and package it as one tarball.
#
#   scripts/cross.sh aarch64   # Raspberry Pi 4/5 (64-bit OS), Jetson Nano/Orin: binary + ONNX Runtime
#   scripts/cross.sh armv7     # 32-bit Raspberry Pi OS: binary only (no ONNX Runtime for armv7 on PyPI)
#
# Toolchain: Debian's rustc-web 1.96 (/usr/bin/rustc) with the target's std from Debian
# (libstd-rust-web-dev:arm64, or the armhf .deb unpacked into a sysroot), the GNU cross linker,
# and rustup's cargo. Missing packages are installed with apt (sudo when not root); set
# LTS_CROSS_NO_INSTALL=1 to forbid that and get a list of what is missing instead.
#
# Output: dist/lts-<version>-<arch>-linux.tar.gz holding lts-<version>-<arch>-linux/ with
#   lts                               the binary (stripped)
#   lib/libonnxruntime.so.<version>   aarch64 only: found by lts next to its binary, no setup
#   devices/*.toml                    device profiles (lts measure --device-profile ...)
#   README.txt                        what to run on the board
# The ONNX Runtime library is fetched on this host by `lts setup --target aarch64 --dest ...`
# (from the onnxruntime PyPI wheel), so the board needs no internet. LTS=path/to/host/lts reuses
# a host build for that step instead of building one.
#
# Environment: CARGO_TARGET_DIR (default target/cross), DIST (default dist), LTS.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
}
[ $# -eq 1 ] || usage
arch="$1"
case "$arch" in
  aarch64) triple=aarch64-unknown-linux-gnu; debarch=arm64; gcc=aarch64-linux-gnu-gcc
           gccpkg=gcc-aarch64-linux-gnu ;;
  armv7) triple=armv7-unknown-linux-gnueabihf; debarch=armhf; gcc=arm-linux-gnueabihf-gcc
         gccpkg=gcc-arm-linux-gnueabihf ;;
  -h|--help) usage ;;
  *) echo "cross.sh: unknown target '$arch': use aarch64 or armv7" >&2; exit 2 ;;
esac

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/cross}"
dist="${DIST:-dist}"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
name="lts-${version}-${arch}-linux"
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
# A mirror mid-sync fails `apt-get update` for a minute or two: try three times.
apt_update() {
  for i in 1 2 3; do
    $SUDO apt-get update -qq && return 0
    echo "cross.sh: apt-get update failed (try $i of 3), retrying in 30 s" >&2
    sleep 30
  done
  return 1
}

# --- toolchain -------------------------------------------------------------------------------
need=()
[ -x /usr/bin/rustc ] && /usr/bin/rustc --version | grep -q '^rustc 1\.9[6-9]\|^rustc 1\.[1-9][0-9][0-9]' \
  || need+=(rustc-web)
command -v "$gcc" >/dev/null || need+=("$gccpkg")
if [ "$arch" = aarch64 ] && [ ! -d "/usr/lib/rustlib/$triple/lib" ]; then
  need+=("libstd-rust-web-dev:$debarch")
fi
if [ ${#need[@]} -gt 0 ]; then
  if [ "${LTS_CROSS_NO_INSTALL:-0}" != 0 ]; then
    echo "cross.sh: missing: ${need[*]} (Debian packages; LTS_CROSS_NO_INSTALL is set)" >&2
    exit 1
  fi
  echo "== installing ${need[*]}"
  if [[ " ${need[*]} " == *":$debarch "* ]] \
     && ! dpkg --print-foreign-architectures | grep -qx "$debarch"; then
    $SUDO dpkg --add-architecture "$debarch"
  fi
  apt_update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi

export RUSTC=/usr/bin/rustc
linker_var="CARGO_TARGET_$(echo "$triple" | tr 'a-z-' 'A-Z_')_LINKER"
export "$linker_var=$gcc"

if [ "$arch" = armv7 ]; then
  # The armhf std (the rlibs of libstd-rust-web-dev:armhf, same version as rustc-web) is unpacked
  # into a private sysroot instead of being installed next to the amd64 compiler.
  sysroot="$CARGO_TARGET_DIR/armhf-sysroot"
  if [ ! -d "$sysroot/usr/lib/rustlib/$triple/lib" ]; then
    echo "== unpacking libstd-rust-web-dev:armhf into $sysroot"
    rustc_deb_version="$(dpkg-query -W -f='${Version}' rustc-web)"
    minor="$(echo "$rustc_deb_version" | cut -d. -f1,2)"
    if ! dpkg --print-foreign-architectures | grep -qx armhf; then
      $SUDO dpkg --add-architecture armhf
      apt_update
    fi
    tmp="$(mktemp -d)"
    for pkg in libstd-rust-web-dev libstd-rust-web-$minor; do
      (cd "$tmp" && apt-get download "$pkg:armhf=$rustc_deb_version") || true
    done
    if ! ls "$tmp"/libstd-rust-web-dev_*_armhf.deb >/dev/null 2>&1; then
      echo "cross.sh: could not download libstd-rust-web-dev:armhf=$rustc_deb_version (is the armhf" \
           "package index of your Debian mirror readable? see apt-get update's output)" >&2
      rm -rf "$tmp"
      exit 1
    fi
    mkdir -p "$sysroot"
    for deb in "$tmp"/*.deb; do dpkg -x "$deb" "$sysroot"; done
    rm -rf "$tmp"
    # Build scripts and proc macros are host artifacts: keep the host's std reachable through
    # the same sysroot.
    ln -sfn /usr/lib/rustlib/x86_64-unknown-linux-gnu "$sysroot/usr/lib/rustlib/x86_64-unknown-linux-gnu"
  fi
  export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_RUSTFLAGS="--sysroot=$(realpath "$sysroot")/usr"
fi

# --- build -----------------------------------------------------------------------------------
echo "== cargo build --release --target $triple (rustc: $($RUSTC --version))"
start=$(date +%s)
cargo build --release --locked --target "$triple"
echo "== built in $(( $(date +%s) - start )) s"
bin="$CARGO_TARGET_DIR/$triple/release/lts"

# --- package ---------------------------------------------------------------------------------
stage="$CARGO_TARGET_DIR/stage/$name"
rm -rf "$stage"
mkdir -p "$stage/lib" "$stage/devices" "$dist"
cp "$bin" "$stage/lts"
case "$arch" in
  aarch64) strip_tool=aarch64-linux-gnu-strip ;;
  armv7) strip_tool=arm-linux-gnueabihf-strip ;;
esac
command -v "$strip_tool" >/dev/null && "$strip_tool" "$stage/lts"
cp devices/*.toml "$stage/devices/"

if [ "$arch" = aarch64 ]; then
  echo "== fetching ONNX Runtime for aarch64 (lts setup --target aarch64)"
  ortdir="$CARGO_TARGET_DIR/ort-aarch64"
  if [ -n "${LTS:-}" ]; then
    "$LTS" setup --target aarch64 --dest "$ortdir"
  else
    # A host build of lts (its own target dir, host rustc) does the fetch.
    env -u RUSTC -u CARGO_TARGET_DIR cargo run --quiet --release --locked -- \
      setup --target aarch64 --dest "$ortdir"
  fi
  cp "$ortdir"/onnxruntime-*-aarch64/libonnxruntime.so.* "$stage/lib/"
  ort_note="ONNX Runtime: lib/$(basename "$stage"/lib/libonnxruntime.so.*) (found next to the binary)."
else
  rmdir "$stage/lib"
  ort_note="ONNX Runtime: none for armv7 on PyPI. Bring your own libonnxruntime.so (>= 1.31, built
for armv7 from source) and export ORT_DYLIB_PATH=/path/to/libonnxruntime.so. Without it,
lts measure/search work with --backend wgpu (Vulkan or GLES through Mesa's v3dv/vc4 drivers)."
fi

cat > "$stage/README.txt" <<EOF
lts $version for $triple

Copy this folder to the board, then on the board:
  ./lts device                                  # what lts sees: CPU, frequencies, thermal zones, throttling
  ./lts device --save devices/my-board.toml     # write a profile from this board
  ./lts measure --preset gpt2-tiny --device-profile devices/raspberry-pi-4.toml
  ./lts search --device-profile devices/raspberry-pi-4.toml

$ort_note
Pick the profile for your board in devices/ (raspberry-pi-4, raspberry-pi-5, jetson-nano,
jetson-orin-nano) and read its [clock] section: pin the governor before timing.
EOF

tarball="$dist/$name.tar.gz"
tar -C "$(dirname "$stage")" -czf "$tarball.partial" "$name"
mv "$tarball.partial" "$tarball"
echo "== wrote $tarball ($(du -h "$tarball" | cut -f1))"
tar -tzf "$tarball"
file "$stage/lts" 2>/dev/null || true
