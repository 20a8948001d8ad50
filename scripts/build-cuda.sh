#!/usr/bin/env bash
# Builds the CUDA variant of valuelens on a machine without a GPU (no driver, no toolkit
# installed) and packs what a GPU machine needs into gpu-pack/ (git-ignored, < 64 MiB), for
# scripts/gpu-check.sh to run there:
#   valuelens.xz         the release binary built with `--features cuda` for sm_90 (H100/H200)
#   cuda-tests.xz        the test binary of tests/cuda.rs (CPU vs CUDA agreement)
#   llama-135m/, llama-8b/  config.json + tokenizer files of the synthetic shapes (no weights:
#                        `synthetic:<shape>@DIR` for valuelens, from_config for transformers)
#   workloads.tar.xz     the shared request sets (../shared/workloads)
#   manifest.json        commit, build flags, sizes, sha256s
# The recipe is ../shared/CUDA.md: CUDA 13.0 wheels from PyPI, link names for the versioned
# libraries, and a stub libcuda.so.1 to link against (the real driver is used at run time).
#
# Usage: scripts/build-cuda.sh [--compute-cap 90] [--toolkit DIR] [--out DIR] [--cpu]
#   --cpu: pack the plain CPU build instead (no toolkit needed), to rehearse gpu-check.sh here
#          with VALUELENS_DEVICE=cpu
# Re-running reuses the toolkit and the build folder (target/cuda), so only changed code is
# rebuilt.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

COMPUTE_CAP=90
TOOLKIT=${VALUELENS_CUDA_TOOLKIT:-$HOME/.cache/valuelens/cuda13}
OUT=$ROOT/gpu-pack
CPU_ONLY=
while [ $# -gt 0 ]; do
    case $1 in
        --cpu) CPU_ONLY=1; shift ;;
        --compute-cap) COMPUTE_CAP=$2; shift 2 ;;
        --toolkit) TOOLKIT=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        -h|--help) sed -n 2,20p "$0"; exit 0 ;;
        *) echo "build-cuda.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done

step() { echo "== $*" >&2; }

[ -d ../shared/workloads ] || { echo "build-cuda.sh: ../shared/workloads is missing (the request sets to measure)" >&2; exit 1; }
cargo build --release --quiet --bin valuelens  # the CPU binary exports the model folders below
if [ -n "$CPU_ONLY" ]; then
    BIN=target/release/valuelens
    TESTS=
else
# 1. The toolkit pieces, from PyPI wheels (nvcc, cicc, headers, the libraries to link).
CU=$TOOLKIT/nvidia/cu13
if [ ! -x "$CU/bin/nvcc" ] || [ ! -f "$CU/lib/libcublas.so.13" ] || [ ! -x "$CU/nvvm/bin/cicc" ]; then
    step "installing the CUDA 13.0 toolkit wheels into $TOOLKIT"
    mkdir -p "$TOOLKIT"
    python3 -m pip install --quiet --disable-pip-version-check --no-warn-conflicts \
        --target "$TOOLKIT" \
        "nvidia-cuda-nvcc==13.0.*" "nvidia-nvvm==13.0.*" "nvidia-cuda-runtime==13.0.*" \
        "nvidia-cuda-cccl==13.0.*" "nvidia-cuda-crt==13.0.*" "nvidia-cublas==13.0.*" \
        "nvidia-curand" "nvidia-cuda-nvrtc==13.0.*"
fi
for f in bin/nvcc nvvm/bin/cicc include/cuda.h; do
    [ -e "$CU/$f" ] || { echo "build-cuda.sh: $CU/$f is missing after the wheel install; delete $TOOLKIT and rerun" >&2; exit 1; }
done

# 2. Unversioned link names (the wheels ship libcublas.so.13, not libcublas.so).
LINK=$TOOLKIT/link
mkdir -p "$LINK"
for lib in "$CU"/lib/lib*.so.*; do
    base=$(basename "$lib")
    ln -sfn "$lib" "$LINK/${base%%.so.*}.so"
done

# 3. A link-time stub for the driver library, defining every driver symbol cudarc declares.
CUDARC_SYS=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.*/src/driver/sys/mod.rs 2>/dev/null | tail -1 || true)
if [ -z "$CUDARC_SYS" ]; then
    step "fetching crates to find cudarc's driver bindings"
    cargo fetch --quiet
    CUDARC_SYS=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.*/src/driver/sys/mod.rs | tail -1)
fi
if [ ! -f "$LINK/libcuda.so" ] || [ "$CUDARC_SYS" -nt "$LINK/libcuda.so" ]; then
    step "building the libcuda stub from $CUDARC_SYS"
    grep -ohE 'fn cu[A-Z][A-Za-z0-9_]*|"cu[A-Z][A-Za-z0-9_]*"' "$CUDARC_SYS" \
        | sed -E 's/^fn //; s/"//g' | sort -u \
        | awk '{ print "void " $1 "(void) {}" }' > "$LINK/cuda_stub.c"
    gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$LINK/libcuda.so" "$LINK/cuda_stub.c"
    ln -sfn libcuda.so "$LINK/libcuda.so.1"
fi

# 4. The build (its own target folder, so CPU builds are untouched).
step "cargo build --release --features cuda (sm_$COMPUTE_CAP); the first build takes ~25 min on 2 cores"
cuda_cargo() {
    PATH=$CU/bin:$CU/nvvm/bin:$PATH CUDA_HOME=$CU CUDA_PATH=$CU CUDA_ROOT=$CU \
    CUDA_COMPUTE_CAP=$COMPUTE_CAP CUDARC_CUDA_VERSION=13000 \
    LIBRARY_PATH=$LINK${LIBRARY_PATH:+:$LIBRARY_PATH} RUSTFLAGS="-L $LINK ${RUSTFLAGS:-}" \
        cargo "$@" --release --features cuda --target-dir target/cuda
}
cuda_cargo build --bin valuelens
BIN=target/cuda/release/valuelens
step "the CUDA test binary (tests/cuda.rs)"
TESTS=$(cuda_cargo test --test cuda --no-run --message-format=json \
    | python3 -c "import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get('reason') == 'compiler-artifact' and m.get('executable') and m['target']['name'] == 'cuda':
        print(m['executable'])" | tail -1)
[ -x "$TESTS" ] || { echo "build-cuda.sh: the cuda test binary was not built" >&2; exit 1; }
fi

# 5. The package.
step "packing into $OUT"
STAGE=$(mktemp -d "$ROOT/.gpu-pack.XXXXXX")
chmod 755 "$STAGE"
trap 'rm -rf "$STAGE"' EXIT
strip -o "$STAGE/valuelens" "$BIN"
xz -6 -T2 "$STAGE/valuelens"
if [ -n "$TESTS" ]; then
    strip -o "$STAGE/cuda-tests" "$TESTS"
    xz -6 -T2 "$STAGE/cuda-tests"
fi
# The synthetic shapes as config.json + tokenizer (the default model's, fetched if missing).
for shape in llama-135m llama-8b; do
    target/release/valuelens export --model "synthetic:$shape" --without-weights --dtype bf16 \
        --out "$STAGE/$shape"
done
tar -C ../shared -cJf "$STAGE/workloads.tar.xz" workloads
COMMIT=$(git rev-parse HEAD)$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo "+dirty")
CPU_ONLY=$CPU_ONLY python3 - "$STAGE" "$COMMIT" "$COMPUTE_CAP" <<'PY'
import hashlib, json, os, sys
stage, commit, cap = sys.argv[1:]
files = {}
for dirpath, _, names in os.walk(stage):
    for n in sorted(names):
        p = os.path.join(dirpath, n)
        files[os.path.relpath(p, stage)] = {
            "bytes": os.path.getsize(p),
            "sha256": hashlib.sha256(open(p, "rb").read()).hexdigest(),
        }
cpu = os.environ.get("CPU_ONLY") == "1"
json.dump({"commit": commit, "features": [] if cpu else ["cuda"],
           "compute_cap": None if cpu else int(cap),
           "cuda": None if cpu else "13.0 (PyPI wheels)", "files": files},
          open(os.path.join(stage, "manifest.json"), "w"), indent=2)
PY
rm -rf "$OUT.old"
[ -e "$OUT" ] && mv "$OUT" "$OUT.old"
mv "$STAGE" "$OUT"
trap - EXIT
rm -rf "$OUT.old"
du -sh "$OUT" >&2
echo "$OUT"
