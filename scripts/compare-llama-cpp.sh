#!/usr/bin/env bash
# Side-by-side prefill throughput and peak memory of llama.cpp and valuelens on the same GGUF
# files, one file at a time, back to back, with the same number of threads:
#
#   llama.cpp  `llama-bench -m FILE -p 512 -n 0 -t THREADS -r 3 -o json`     → pp512 tokens/s
#   valuelens  `valuelens bench --model FILE --input <first N requests>`     → computed tokens/s
#
# each under `/usr/bin/time -v` for the peak resident set. Writes PREFIX.json and PREFIX.md
# (default benches/results/<date>-llama-cpp-side-by-side) with the CPU, its kernel-relevant
# flags, the thread count, the date, valuelens's commit and llama.cpp's version.
#
# Not part of CI. llama.cpp is built outside the repository, in WORK (default /tmp/llamacpp),
# on first use and whenever its build configuration changes: the llama.cpp sources vendored in
# the llama-cpp-python 0.3.36 sdist (fetched by package name with pip, sha256-checked), Debian's
# cmake, Release, GGML_NATIVE=ON, no CUDA, no curl, targets llama-bench and llama-quantize only.
# On CPUs with AMX the build adds -mno-amx-{tile,int8,bf16}: ggml's AMX matrix product
# (ggml_backend_amx_mul_mat) segfaults on the first prompt on this project's Sapphire Rapids VM
# (llama.cpp issue 20824), and without AMX it uses its AVX-512 VNNI kernels and CPU repacking;
# --llama-amx keeps AMX.
#
# The two numbers measure the same thing in different shapes: llama-bench's pp512 is one
# 512-token prompt in one batch on an empty cache; valuelens's computed tokens/s is every distinct
# token of the request file (shared prefixes computed once) with log-softmax on the scored rows,
# model loading excluded from both. llama-bench maps the file (its RSS counts the mapped pages it
# touched); valuelens repacks into its own memory.
#
# usage: scripts/compare-llama-cpp.sh [options] FILE.gguf [FILE.gguf ...]
#   --work DIR         llama.cpp work folder (default /tmp/llamacpp)
#   --threads N        threads for both tools (default 2)
#   --requests N       valuelens: the first N requests of the workload (default 256 for files
#                      under 2 GB, 16 for larger ones)
#   --workload FILE    request file (default ../shared/workloads/smollm2-t2-100pairs.jsonl)
#   --reps N           llama-bench repetitions (default 3)
#   --dtype D          valuelens --dtype (default: not given, i.e. valuelens's default)
#   --valuelens BIN    use this valuelens binary instead of `cargo build --release`'s
#   --out PREFIX       write PREFIX.json and PREFIX.md
#   --jobs N           cmake build jobs (default 2)
#   --llama-amx        build llama.cpp with AMX (see above)
#   --build-only       build llama.cpp (if needed) and stop
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

WORK=/tmp/llamacpp
THREADS=2
REQUESTS=""
WORKLOAD=$REPO/../shared/workloads/smollm2-t2-100pairs.jsonl
REPS=3
DTYPE=""
VALUELENS=""
OUT=""
JOBS=2
LLAMA_AMX=0
BUILD_ONLY=0

LCP_VERSION=0.3.36
LCP_SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e

usage() { sed -n '/^# usage:/,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
die() { echo "compare-llama-cpp.sh: $*" >&2; exit 1; }
need_value() { [ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value"; }

files=()
while [ $# -gt 0 ]; do
    case "$1" in
        --work) need_value "$@"; WORK=$2; shift 2 ;;
        --threads) need_value "$@"; THREADS=$2; shift 2 ;;
        --requests) need_value "$@"; REQUESTS=$2; shift 2 ;;
        --workload) need_value "$@"; WORKLOAD=$2; shift 2 ;;
        --reps) need_value "$@"; REPS=$2; shift 2 ;;
        --dtype) need_value "$@"; DTYPE=$2; shift 2 ;;
        --valuelens) need_value "$@"; VALUELENS=$2; shift 2 ;;
        --out) need_value "$@"; OUT=$2; shift 2 ;;
        --jobs) need_value "$@"; JOBS=$2; shift 2 ;;
        --llama-amx) LLAMA_AMX=1; shift ;;
        --build-only) BUILD_ONLY=1; shift ;;
        -h|--help) usage; exit 0 ;;
        --) shift; files+=("$@"); break ;;
        -*) die "unknown option $1 (--help lists them)" ;;
        *) files+=("$1"); shift ;;
    esac
done
[ "$BUILD_ONLY" = 1 ] || [ ${#files[@]} -gt 0 ] || { usage >&2; exit 2; }
for f in ${files[@]+"${files[@]}"}; do [ -f "$f" ] || die "no such file: $f"; done
[ "$BUILD_ONLY" = 1 ] || [ -f "$WORKLOAD" ] || die "no workload file at $WORKLOAD (--workload)"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {
    as_root apt-get install -y "$@" >/dev/null 2>&1 ||
        { as_root apt-get update >/dev/null && as_root apt-get install -y "$@" >/dev/null; }
}

# ---- llama.cpp, built in WORK --------------------------------------------------------------
SRC=$WORK/llama_cpp_python-$LCP_VERSION/vendor/llama.cpp
BUILD=$WORK/build
LLAMA_BENCH=$BUILD/bin/llama-bench
LLAMA_QUANTIZE=$BUILD/bin/llama-quantize

build_llama_cpp() {
    mkdir -p "$WORK"
    local sdist=$WORK/sdist/llama_cpp_python-$LCP_VERSION.tar.gz
    if [ ! -f "$sdist" ]; then
        [ -x "$WORK/venv/bin/pip" ] || python3 -m venv "$WORK/venv"
        "$WORK/venv/bin/pip" install -q scikit-build-core
        "$WORK/venv/bin/pip" download -q --no-deps --no-binary :all: --no-build-isolation \
            "llama-cpp-python==$LCP_VERSION" -d "$WORK/sdist"
    fi
    echo "$LCP_SHA256  $sdist" | sha256sum -c --quiet - ||
        die "$sdist does not have the expected sha256 $LCP_SHA256"
    [ -f "$SRC/CMakeLists.txt" ] || tar -C "$WORK" -xzf "$sdist"
    command -v cmake >/dev/null || apt_install cmake

    # The sdist carries no git history: the vendored commit is the one its changelog names.
    local commit
    commit=$(awk -v v="## [$LCP_VERSION]" '$0 == v {on = 1; next} /^## \[/ {on = 0}
        on && match($0, /llama\.cpp@[0-9a-f]+/) {print substr($0, RSTART + 10, RLENGTH - 10); exit}' \
        "$WORK/llama_cpp_python-$LCP_VERSION/CHANGELOG.md")
    local cflags=""
    if [ "$LLAMA_AMX" = 0 ] && grep -qw amx_int8 /proc/cpuinfo; then
        cflags="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
    fi
    local args=(-DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DGGML_CUDA=OFF -DLLAMA_CURL=OFF
        -DLLAMA_OPENSSL=OFF -DBUILD_SHARED_LIBS=OFF -DGGML_CCACHE=OFF -DLLAMA_BUILD_TESTS=OFF
        -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF
        "-DLLAMA_BUILD_COMMIT=${commit:-unknown}" "-DCMAKE_C_FLAGS=$cflags" "-DCMAKE_CXX_FLAGS=$cflags")
    local stamp="$LCP_VERSION ${args[*]}"
    if [ -x "$LLAMA_BENCH" ] && [ -x "$LLAMA_QUANTIZE" ] &&
        [ "$(cat "$BUILD/valuelens-build-config" 2>/dev/null)" = "$stamp" ]; then
        return
    fi
    echo "building llama.cpp ${commit:-?} in $BUILD (cmake ${args[*]}; logs in $WORK)" >&2
    cmake -S "$SRC" -B "$BUILD" "${args[@]}" >"$WORK/cmake-configure.log" 2>&1 ||
        { tail -20 "$WORK/cmake-configure.log" >&2; die "cmake configure failed"; }
    cmake --build "$BUILD" --config Release -j "$JOBS" --target llama-bench llama-quantize \
        >"$WORK/cmake-build.log" 2>&1 || { tail -20 "$WORK/cmake-build.log" >&2; die "cmake build failed"; }
    echo "$stamp" >"$BUILD/valuelens-build-config"
}
build_llama_cpp
echo "llama-bench:    $LLAMA_BENCH" >&2
echo "llama-quantize: $LLAMA_QUANTIZE" >&2
[ "$BUILD_ONLY" = 0 ] || exit 0

# ---- valuelens and /usr/bin/time ----------------------------------------------------------
[ -x /usr/bin/time ] || apt_install time
if [ -z "$VALUELENS" ]; then
    cargo build --release -q
    VALUELENS=target/release/valuelens
fi
[ -x "$VALUELENS" ] || die "no valuelens binary at $VALUELENS"
git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null ||
    echo "compare-llama-cpp.sh: note: src/ or Cargo files differ from HEAD; the JSON says so" >&2

# ---- the runs ---------------------------------------------------------------------------
DATE=$(date -u +%Y-%m-%d)
OUT=${OUT:-benches/results/$DATE-llama-cpp-side-by-side}
mkdir -p "$(dirname "$OUT")"
tmp=$(mktemp -d /tmp/compare-llama-cpp.XXXX)
trap 'rm -rf "$tmp"' EXIT
started=$(date -u +%Y-%m-%dT%H:%M:%SZ)

i=0
for f in "${files[@]}"; do
    i=$((i + 1))
    size=$(stat -Lc %s "$f")
    n=$REQUESTS
    [ -n "$n" ] || { [ "$size" -lt 2000000000 ] && n=256 || n=16; }
    head -n "$n" "$WORKLOAD" >"$tmp/requests-$i.jsonl"
    {
        echo "file=$f"; echo "size=$size"; echo "requests=$n"
        echo "load_before_llama=$(cut -d' ' -f1-3 /proc/loadavg)"
    } >"$tmp/meta-$i"

    echo "[$i/${#files[@]}] $f: llama-bench pp512, $THREADS threads, $REPS repetitions" >&2
    rc=0
    /usr/bin/time -v -o "$tmp/llama-$i.time" "$LLAMA_BENCH" -m "$f" -p 512 -n 0 -t "$THREADS" \
        -r "$REPS" -o json >"$tmp/llama-$i.json" 2>"$tmp/llama-$i.err" || rc=$?
    echo "llama_rc=$rc" >>"$tmp/meta-$i"
    [ "$rc" = 0 ] || { echo "  llama-bench failed (exit $rc):" >&2; tail -5 "$tmp/llama-$i.err" >&2; }

    echo "load_before_valuelens=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$tmp/meta-$i"
    echo "[$i/${#files[@]}] $f: valuelens bench, first $n requests of $(basename "$WORKLOAD")" >&2
    dtype=(); [ -z "$DTYPE" ] || dtype=(--dtype "$DTYPE")
    rc=0
    RAYON_NUM_THREADS=$THREADS /usr/bin/time -v -o "$tmp/valuelens-$i.time" "$VALUELENS" bench \
        --model "$f" --input "$tmp/requests-$i.jsonl" ${dtype[@]+"${dtype[@]}"} \
        >"$tmp/valuelens-$i.json" 2>"$tmp/valuelens-$i.err" || rc=$?
    echo "valuelens_rc=$rc" >>"$tmp/meta-$i"
    [ "$rc" = 0 ] || { echo "  valuelens bench failed (exit $rc):" >&2; tail -5 "$tmp/valuelens-$i.err" >&2; }
done

# ---- JSON and Markdown ------------------------------------------------------------------
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || commit="$commit+dirty"
python3 - "$tmp" "$i" "$OUT" "$THREADS" "$REPS" "$started" "$commit" "$VALUELENS" \
    "$LLAMA_BENCH" "$WORKLOAD" "$DTYPE" "$LLAMA_AMX" "$BUILD/valuelens-build-config" <<'PY'
import json, os, re, subprocess, sys

(tmp, count, out, threads, reps, started, commit, valuelens, llama_bench, workload, dtype,
 llama_amx, build_config) = sys.argv[1:]

def read(path):
    try:
        return open(path, encoding="utf-8", errors="replace").read()
    except OSError:
        return ""

def peak_rss(path):
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", read(path))
    return int(m.group(1)) * 1024 if m else None

cpuinfo = read("/proc/cpuinfo")
model = re.search(r"^model name\s*:\s*(.*)$", cpuinfo, re.M)
flags = set((re.search(r"^flags\s*:\s*(.*)$", cpuinfo, re.M) or [None, ""])[1].split())
kernel_flags = ["avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16"]
mem = re.search(r"^MemTotal:\s*(\d+) kB", read("/proc/meminfo"), re.M)
version = subprocess.run([llama_bench, "--version"], capture_output=True, text=True)
version = " ".join(l.strip() for l in (version.stdout + version.stderr).splitlines()
                   if l.startswith(("version", "built with")))

runs = []
for i in range(1, int(count) + 1):
    meta = dict(l.split("=", 1) for l in read(f"{tmp}/meta-{i}").splitlines() if "=" in l)
    size = int(meta["size"])
    run = {"file": os.path.abspath(meta["file"]), "file_bytes": size}

    llama = {"exit": int(meta["llama_rc"]), "load_before": meta["load_before_llama"],
             "peak_rss_bytes": peak_rss(f"{tmp}/llama-{i}.time")}
    try:
        tests = json.loads(read(f"{tmp}/llama-{i}.json"))
        t = next(t for t in tests if t.get("n_prompt") == 512 and t.get("n_gen") == 0)
        llama.update({"tokens_per_s": t["avg_ts"], "stddev_tokens_per_s": t["stddev_ts"],
                      "samples_tokens_per_s": t.get("samples_ts"), "model_type": t.get("model_type"),
                      "n_threads": t.get("n_threads"), "n_batch": t.get("n_batch"),
                      "n_ubatch": t.get("n_ubatch"), "flash_attn": t.get("flash_attn"),
                      "type_k": t.get("type_k"), "cpu_info": t.get("cpu_info"),
                      "build_commit": t.get("build_commit")})
    except (ValueError, StopIteration, TypeError):
        llama["error"] = read(f"{tmp}/llama-{i}.err")[-2000:]
    run["llama_cpp"] = llama

    vl = {"exit": int(meta["valuelens_rc"]), "load_before": meta["load_before_valuelens"],
          "requests": int(meta["requests"]), "peak_rss_bytes": peak_rss(f"{tmp}/valuelens-{i}.time")}
    try:
        b = json.loads(read(f"{tmp}/valuelens-{i}.json").strip().splitlines()[-1])
        vl.update({"tokens_per_s": b["computed_tokens_per_s"], "computed_tokens": b["computed_tokens"],
                   "request_tokens": b["request_tokens"], "load_s": b["load_s"], "score_s": b["score_s"],
                   "dtype": b["settings"]["dtype"], "matmul_kernels": b["settings"].get("matmul_kernels"),
                   "threads": b["settings"].get("threads"), "own_peak_rss_mb": b.get("peak_rss_mb"),
                   "rechecked_requests": b.get("rechecked_requests", 0),
                   "rechecked_tokens": b.get("rechecked_tokens", 0)})
    except (ValueError, IndexError, KeyError):
        vl["error"] = read(f"{tmp}/valuelens-{i}.err")[-2000:]
    run["valuelens"] = vl

    for tool in (llama, vl):  # a failed run's peak says nothing about the model
        if tool["peak_rss_bytes"] and tool["exit"] == 0:
            tool["rss_per_file"] = round(tool["peak_rss_bytes"] / size, 3)
    if llama.get("tokens_per_s") and vl.get("tokens_per_s"):
        run["valuelens_over_llama_cpp"] = round(vl["tokens_per_s"] / llama["tokens_per_s"], 3)
    runs.append(run)

result = {
    "date": started,
    "cpu": {"model": model.group(1).strip() if model else None, "cores": os.cpu_count(),
            "flags": [f for f in kernel_flags if f in flags],
            "mem_total_bytes": int(mem.group(1)) * 1024 if mem else None},
    "threads": int(threads),
    "valuelens": {"commit": commit, "binary": valuelens, "dtype_flag": dtype or None,
                  "workload": os.path.abspath(workload)},
    "llama_cpp": {"version": version, "binary": llama_bench,
                  "build_config": read(build_config).strip(), "amx": llama_amx == "1",
                  "command": f"llama-bench -m FILE -p 512 -n 0 -t {threads} -r {reps} -o json"},
    "runs": runs,
}
with open(out + ".json", "w") as f:
    json.dump(result, f, indent=2)
    f.write("\n")

def gb(b):
    return f"{b / 1e9:.2f} GB" if b else "—"

def rate(t):
    return f"{t['tokens_per_s']:.1f}" if t.get("tokens_per_s") else f"failed (exit {t['exit']})"

lines = [
    f"# llama.cpp and valuelens side by side ({started[:10]})", "",
    f"CPU: {result['cpu']['model']}, {result['cpu']['cores']} cores "
    f"({', '.join(result['cpu']['flags'])}); {threads} threads for both tools.",
    f"valuelens {commit} (`valuelens bench`, dtype {dtype or 'default'}); "
    f"llama.cpp {version or '?'}{'' if llama_amx == '1' else ' (built without AMX)'}.", "",
    f"llama.cpp: `{result['llama_cpp']['command']}` (pp512, mean of {reps}). valuelens: computed "
    f"tokens/s over the first N requests of `{os.path.basename(workload)}`, loading excluded. "
    "Peak RSS from `/usr/bin/time -v`.", "",
    "| file | size | valuelens requests | llama.cpp pp512 tok/s | valuelens tok/s | valuelens / llama.cpp "
    "| llama.cpp peak RSS (× file) | valuelens peak RSS (× file) | valuelens dtype |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---|",
]
for r in runs:
    l, v = r["llama_cpp"], r["valuelens"]
    ratio = f"{r['valuelens_over_llama_cpp']:.2f}×" if "valuelens_over_llama_cpp" in r else "—"
    def rss(t):
        return f"{gb(t['peak_rss_bytes'])} ({t['rss_per_file']:.2f}×)" if t.get("rss_per_file") else "—"
    lines.append(f"| {os.path.basename(r['file'])} | {gb(r['file_bytes'])} | {v['requests']} | {rate(l)} "
                 f"| {rate(v)} | {ratio} | {rss(l)} | {rss(v)} | {v.get('dtype', '—')} |")
loads = "; ".join(f"{os.path.basename(r['file'])}: {r['llama_cpp']['load_before']} / "
                  f"{r['valuelens']['load_before']}" for r in runs)
lines += ["", f"Load average (1, 5, 15 min) before each llama.cpp / valuelens run: {loads}.", ""]
with open(out + ".md", "w") as f:
    f.write("\n".join(lines))
print("\n".join(lines))
print(f"wrote {out}.json and {out}.md", file=sys.stderr)
PY
