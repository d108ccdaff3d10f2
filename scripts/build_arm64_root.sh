#!/usr/bin/env bash
# Build, or reuse from the cache, an arm64 Debian root in which qemu-aarch64-static runs the
# edgecost device agent: Debian's python3 and numpy, plus the onnxruntime and ai-edge-litert
# aarch64 wheels, and a fake /proc/cpuinfo and /sys/devices/system/cpu/{possible,present,online}
# (onnxruntime segfaults under qemu-user without a readable aarch64 cpuinfo).
#
# Usage:  scripts/build_arm64_root.sh [--force]
# Prints the root's path as the last line of stdout; logs go to stderr. Exit status: 0 done,
# 1 failed, 2 bad arguments, 3 a prerequisite is missing (a tool, root, pip).
# Run a program in it (no chroot, no binfmt, no root needed once built):
#     qemu-aarch64-static -L ROOT ROOT/usr/bin/python3 script.py
# With -L, qemu looks every absolute path up in ROOT first and falls back to the host's file
# when ROOT lacks it: /usr and /etc come from ROOT, /proc/self, /tmp and /dev from the host,
# /proc/cpuinfo and the three /sys files from the fakes written here.
#
# How it is built (no chroot and no binfmt, so it works in a container too): debootstrap's first
# stage (--foreign) downloads the packages, every .deb is unpacked with dpkg-deb -x (maintainer
# scripts do not run; the one thing they would do that matters, the libblas/liblapack
# alternatives, is done by hand), and the wheels are unzipped into /usr/local/lib/python3.X/
# dist-packages, which Debian's python3 puts on sys.path ahead of Debian's own packages.
# Debian's numpy is used unless a wheel asks for a newer one (then a numpy wheel is added).
# Only the wheels themselves are installed: `import onnxruntime` and
# `from ai_edge_litert.interpreter import Interpreter` need nothing but numpy.
#
# Needs (as root, for debootstrap): debootstrap, qemu-user-static, dpkg, flock, a python3 with
# pip (EDGECOST_PIP_PYTHON, default python3), and the network (Debian's and Python's default
# package indexes). Nothing is registered with binfmt_misc and nothing outside the cache changes.
#
# Environment:
#   EDGECOST_CI_CACHE             cache folder (default $HOME/.cache/edgecost-ci)
#   EDGECOST_ARM64_ORT_VERSION    onnxruntime version (default 1.32.0)
#   EDGECOST_ARM64_LITERT_VERSION ai-edge-litert version (default 2.3.0)
#   EDGECOST_ARM64_CPUS           cores the fake cpuinfo shows (default: min(4, host CPUs);
#                                 more than the host has makes onnxruntime fail to pin threads)
#   EDGECOST_PIP_PYTHON           python used to run `pip download` (default python3)
set -euo pipefail

SUITE=bookworm
ORT_VERSION=${EDGECOST_ARM64_ORT_VERSION:-1.32.0}
LITERT_VERSION=${EDGECOST_ARM64_LITERT_VERSION:-2.3.0}
LAYOUT=1 # bump when what this script puts in the root changes, so old caches are not reused
CACHE=${EDGECOST_CI_CACHE:-$HOME/.cache/edgecost-ci}
PIP_PYTHON=${EDGECOST_PIP_PYTHON:-python3}
KEY="$SUITE-ort$ORT_VERSION-litert$LITERT_VERSION-l$LAYOUT"
ROOT="$CACHE/arm64-root-$KEY"
DONE="$ROOT/.edgecost-root-done"

FORCE=0
for arg in "$@"; do
    case "$arg" in
        --force) FORCE=1 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "build_arm64_root.sh: unknown argument $arg (try --help)" >&2; exit 2 ;;
    esac
done

log() { echo "[build_arm64_root] $*" >&2; }
die() { echo "[build_arm64_root] error: $*" >&2; exit 1; }
missing() { echo "[build_arm64_root] cannot build: $*" >&2; exit 3; } # tests skip on exit 3
trap 'echo "[build_arm64_root] error: command failed (exit $?) at line $LINENO" >&2' ERR

# The fakes depend on the host's CPU count, so they are (re)written on every call, cached or not.
write_fakes() {
    local root=$1 cpus=${EDGECOST_ARM64_CPUS:-}
    if [[ -z "$cpus" ]]; then
        cpus=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 4)
        if ((cpus > 4)); then cpus=4; fi
    fi
    [[ "$cpus" =~ ^[1-9][0-9]*$ ]] || die "EDGECOST_ARM64_CPUS must be a positive integer, got '$cpus'"
    local cpuinfo="" i
    # A Raspberry Pi 4 (Cortex-A72, implementer 0x41 part 0xd08), as its kernel prints it.
    for ((i = 0; i < cpus; i++)); do
        cpuinfo+=$(printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3' "$i")
        cpuinfo+=$'\n\n'
    done
    cpuinfo+=$'Hardware\t: BCM2835\nRevision\t: c03111\nSerial\t\t: 10000000edc0ffee\nModel\t\t: Raspberry Pi 4 Model B Rev 1.1\n'
    mkdir -p "$root/proc" "$root/sys/devices/system/cpu"
    replace_if_changed "$root/proc/cpuinfo" "$cpuinfo"
    local f
    for f in possible present online; do
        replace_if_changed "$root/sys/devices/system/cpu/$f" "0-$((cpus - 1))"
    done
}

# Atomic replace, and only when the content differs, so a run using the root is not disturbed.
replace_if_changed() {
    local path=$1 content=$2
    if [[ -f "$path" ]] && [[ "$(cat "$path")" == "$(printf '%s' "$content")" ]]; then return 0; fi
    printf '%s\n' "$content" >"$path.tmp.$$"
    mv -f "$path.tmp.$$" "$path"
}

mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd) # debootstrap's --cache-dir must be absolute
ROOT="$CACHE/arm64-root-$KEY"
DONE="$ROOT/.edgecost-root-done"

exec 9>"$CACHE/arm64-root-$KEY.lock"
flock 9 # one builder at a time; a second caller waits, then finds the root done

if [[ -f "$DONE" && $FORCE == 0 ]]; then
    write_fakes "$ROOT"
    log "reusing $ROOT"
    echo "$ROOT"
    exit 0
fi

for tool in debootstrap dpkg-deb qemu-aarch64-static; do
    command -v "$tool" >/dev/null || missing "$tool not found; apt-get install debootstrap qemu-user-static"
done
[[ $(id -u) == 0 ]] || missing "debootstrap needs root; run as root (or sudo)"
"$PIP_PYTHON" -m pip --version >/dev/null 2>&1 ||
    missing "'$PIP_PYTHON -m pip' does not work; set EDGECOST_PIP_PYTHON to a python with pip"

START=$SECONDS
WORK="$ROOT.building"
rm -rf "$WORK" "$ROOT"
mkdir -p "$WORK" "$CACHE/debs-arm64-$SUITE" "$CACHE/wheels-aarch64"

log "debootstrap (first stage) $SUITE arm64 into $WORK"
debootstrap --foreign --arch=arm64 --variant=minbase --include=python3-minimal,python3-numpy \
    --cache-dir="$CACHE/debs-arm64-$SUITE" "$SUITE" "$WORK" >&2 ||
    die "debootstrap failed; see $WORK/debootstrap/debootstrap.log"

log "unpacking $(ls "$WORK"/var/cache/apt/archives/*.deb | wc -l) packages with dpkg-deb -x"
for deb in "$WORK"/var/cache/apt/archives/*.deb; do
    dpkg-deb -x "$deb" "$WORK"
done
# Nothing will run apt or dpkg here: drop the package lists (~50 MB), the .debs, and docs.
rm -f "$WORK"/var/cache/apt/archives/*.deb
rm -rf "$WORK/debootstrap" "$WORK"/var/lib/apt/lists/* "$WORK"/usr/share/{doc,man,info,locale}
# Device nodes are neither needed (with -L, /dev falls through to the host's) nor cacheable.
rm -rf "$WORK/dev"
chmod 1777 "$WORK/tmp"

# What the libblas3/liblapack3 postinst would do with update-alternatives.
TRIPLET=aarch64-linux-gnu
for lib in blas/libblas.so.3 lapack/liblapack.so.3; do
    if [[ -e "$WORK/usr/lib/$TRIPLET/$lib" ]]; then
        ln -sfn "$lib" "$WORK/usr/lib/$TRIPLET/$(basename "$lib")"
    fi
done

PYBIN=$(readlink "$WORK/usr/bin/python3") # e.g. python3.11
PYVER=${PYBIN#python}
[[ "$PYVER" =~ ^3\.[0-9]+$ ]] || die "cannot tell the root's python version from usr/bin/python3 -> $PYBIN"
SITE="$WORK/usr/local/lib/python$PYVER/dist-packages"
mkdir -p "$SITE"

PLATFORMS=(--platform manylinux_2_28_aarch64 --platform manylinux_2_27_aarch64
    --platform manylinux_2_17_aarch64 --platform manylinux2014_aarch64)
pip_download() {
    "$PIP_PYTHON" -m pip download --disable-pip-version-check --no-deps --only-binary=:all: \
        "${PLATFORMS[@]}" --python-version "$PYVER" --implementation cp \
        -d "$CACHE/wheels-aarch64" "$@" >&2
}

log "downloading onnxruntime==$ORT_VERSION and ai-edge-litert==$LITERT_VERSION for cp${PYVER/./} aarch64"
pip_download "onnxruntime==$ORT_VERSION" "ai-edge-litert==$LITERT_VERSION"
CP=cp${PYVER/./}
WHEELS=()
for pattern in "onnxruntime-$ORT_VERSION-$CP-*aarch64*.whl" "ai_edge_litert-$LITERT_VERSION-$CP-*aarch64*.whl"; do
    # shellcheck disable=SC2206 # the glob is meant to expand
    found=($CACHE/wheels-aarch64/$pattern)
    [[ -f "${found[0]}" ]] || die "no wheel matching $pattern in $CACHE/wheels-aarch64"
    WHEELS+=("${found[0]}")
done

# Debian's numpy unless a wheel needs a newer one.
NUMPY_NEED=$("$PIP_PYTHON" - "${WHEELS[@]}" <<'EOF'
import re, sys, zipfile
best = (0,)
for path in sys.argv[1:]:
    with zipfile.ZipFile(path) as whl:
        meta = next(n for n in whl.namelist() if n.endswith(".dist-info/METADATA"))
        for line in whl.read(meta).decode().splitlines():
            m = re.match(r"Requires-Dist: numpy\s*\(?>=\s*([0-9.]+)", line)
            if m and ";" not in line:
                best = max(best, tuple(int(p) for p in m.group(1).split(".")))
print(".".join(map(str, best)))
EOF
)
NUMPY_HAVE=$(sed -n "s/^Version: //p" "$WORK"/usr/lib/python3/dist-packages/numpy-*.egg-info/PKG-INFO \
    "$WORK"/usr/lib/python3/dist-packages/numpy-*.dist-info/METADATA 2>/dev/null | head -1 || true)
if [[ -z "$NUMPY_HAVE" ]] || [[ "$(printf '%s\n%s\n' "$NUMPY_NEED" "$NUMPY_HAVE" | sort -V | head -1)" != "$NUMPY_NEED" ]]; then
    log "Debian's numpy ${NUMPY_HAVE:-(none)} is older than the $NUMPY_NEED the wheels need: adding a numpy wheel"
    pip_download "numpy>=$NUMPY_NEED"
    # shellcheck disable=SC2206
    found=($(ls -v "$CACHE"/wheels-aarch64/numpy-*-"$CP"-*aarch64*.whl | tail -1))
    WHEELS+=("${found[0]}")
else
    log "using Debian's numpy $NUMPY_HAVE (wheels need >= $NUMPY_NEED)"
fi

for whl in "${WHEELS[@]}"; do
    log "installing $(basename "$whl")"
    "$PIP_PYTHON" -m zipfile -e "$whl" "$SITE"
done

write_fakes "$WORK"

# dpkg's postinst would have byte-compiled Debian's modules; doing it once here (about 20 s
# under qemu) saves 2-3 s on every later start that imports numpy and the runtimes.
log "byte-compiling the root's Python modules under qemu"
env -u PYTHONDONTWRITEBYTECODE -u PYTHONPATH -u PYTHONHOME \
    qemu-aarch64-static -L "$WORK" "$WORK/usr/bin/$PYBIN" -m compileall -q -j "$(getconf _NPROCESSORS_ONLN)" \
    "$WORK/usr/lib/python$PYVER" "$WORK/usr/lib/python3/dist-packages" "$SITE" >&2 ||
    die "byte-compiling under qemu failed"

log "checking the root under qemu-aarch64-static"
env -u PYTHONPATH -u PYTHONHOME qemu-aarch64-static -L "$WORK" "$WORK/usr/bin/$PYBIN" -c '
import platform, numpy, onnxruntime
from ai_edge_litert.interpreter import Interpreter
assert platform.machine() == "aarch64", platform.machine()
print("python", platform.python_version(), "numpy", numpy.__version__,
      "onnxruntime", onnxruntime.__version__)' >&2 || die "the new root does not run under qemu"

printf 'suite=%s\nonnxruntime=%s\nai-edge-litert=%s\nlayout=%s\npython=%s\nbuilt=%s\n' \
    "$SUITE" "$ORT_VERSION" "$LITERT_VERSION" "$LAYOUT" "$PYVER" "$(date -u +%FT%TZ)" >"$WORK/.edgecost-root-done"
mv "$WORK" "$ROOT"
log "built $ROOT in $((SECONDS - START)) s ($(du -sh "$ROOT" | cut -f1))"
echo "$ROOT"
