#!/usr/bin/env bash
# A static, stripped presenced for one musl target:
#   packaging/static/build.sh TARGET     e.g. x86_64-unknown-linux-musl,
#                                             aarch64-unknown-linux-musl
# Builds with the `release-small` profile (Cargo.toml) and the default features, so
# jemalloc stays the allocator (musl's malloc is much slower under sled's cross-thread
# frees). Zig is the C compiler (jemalloc is C) and the linker for every target, through
# cargo-zigbuild: both come from PyPI (ziglang, cargo-zigbuild) into a venv under
# target/static-tools, so nothing is needed beyond python3, rustup and cargo, and a
# rerun installs nothing. Prints the binary's path and size on its last line; fails
# when the binary is not static or is larger than STATIC_MAX_BYTES (10 MB).
#
# ZIGLANG_VERSION / CARGO_ZIGBUILD_VERSION override the pinned tool versions.
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 TARGET (e.g. x86_64-unknown-linux-musl, aarch64-unknown-linux-musl)" >&2
    exit 2
fi
TARGET=$1
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
TOOLS=$TARGET_DIR/static-tools
ZIGLANG_VERSION=${ZIGLANG_VERSION:-0.17.1}
CARGO_ZIGBUILD_VERSION=${CARGO_ZIGBUILD_VERSION:-0.24.1}
MAX_BYTES=${STATIC_MAX_BYTES:-10000000}
PROFILE=release-small

case "$TARGET" in
    *-linux-musl*) ;;
    *) echo "build.sh: $TARGET is not a Linux musl target" >&2; exit 2 ;;
esac

# The Rust standard library for the target.
if ! rustup target list --installed | grep -qx "$TARGET"; then
    echo "build.sh: rustup target add $TARGET"
    rustup target add "$TARGET"
fi

# Zig and cargo-zigbuild, pinned, in a venv of their own; reinstalled only when the pins
# change.
stamp="ziglang==$ZIGLANG_VERSION cargo-zigbuild==$CARGO_ZIGBUILD_VERSION"
if [ "$(cat "$TOOLS/stamp" 2>/dev/null)" != "$stamp" ] || [ ! -x "$TOOLS/venv/bin/cargo-zigbuild" ]; then
    echo "build.sh: installing $stamp into $TOOLS/venv"
    rm -rf "$TOOLS"
    mkdir -p "$TOOLS"
    python3 -m venv "$TOOLS/venv"
    # shellcheck disable=SC2086 # the stamp is the list of requirements
    "$TOOLS/venv/bin/pip" install -q --disable-pip-version-check $stamp
    echo "$stamp" >"$TOOLS/stamp"
fi
# cargo-zigbuild runs `python3 -m ziglang` when no `zig` is on the PATH: the venv's.
export PATH=$TOOLS/venv/bin:$PATH

locked=()
[ "${CI:-}" = true ] && locked=(--locked)
start=$SECONDS
cargo zigbuild "${locked[@]}" --profile "$PROFILE" --target "$TARGET" --bin presenced
echo "build.sh: built in $((SECONDS - start)) s"

BIN=$TARGET_DIR/$TARGET/$PROFILE/presenced
# Static: no program interpreter (PT_INTERP) in the ELF program headers.
python3 - "$BIN" <<'PY'
import struct, sys
path = sys.argv[1]
with open(path, "rb") as f:
    elf = f.read()
if elf[:4] != b"\x7fELF":
    sys.exit(f"build.sh: {path} is not an ELF file")
wide, order = elf[4] == 2, "<" if elf[5] == 1 else ">"
if wide:
    phoff, = struct.unpack_from(order + "Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from(order + "HH", elf, 0x36)
else:
    phoff, = struct.unpack_from(order + "I", elf, 0x1C)
    phentsize, phnum = struct.unpack_from(order + "HH", elf, 0x2A)
for i in range(phnum):
    p_type, = struct.unpack_from(order + "I", elf, phoff + i * phentsize)
    if p_type == 3:  # PT_INTERP
        sys.exit(f"build.sh: {path} is dynamically linked (it names a program interpreter)")
PY

size=$(stat -c %s "$BIN")
if [ "$size" -gt "$MAX_BYTES" ]; then
    echo "build.sh: $BIN is $size bytes, over the limit of $MAX_BYTES" >&2
    exit 1
fi
echo "$BIN $size bytes ($(awk -v s="$size" 'BEGIN { printf "%.2f MB", s / 1e6 }'))"
