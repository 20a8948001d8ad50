#!/usr/bin/env python3
"""Renders the measured-number tables of README.md and docs/*.md from the result files in
benches/results/, so that every table shows what its data says.

A table lives between two markers:

    <!-- results: KIND FILE.json [FILE.json …] -->
    …rendered table and its caption (machine, threads, commit, date, data files)…
    <!-- /results -->

KIND says how the data becomes a table (see RENDERERS). Without options the script rewrites the
blocks; with --check it changes nothing and exits 1, naming each block whose text differs from
what its data gives (a hand-edited figure, or data changed without rendering). tests/docs.rs runs
the check in CI.

usage: scripts/render-results.py [--check] [--root DIR]
"""

import argparse
import glob
import json
import os
import re
import sys

BLOCK = re.compile(r"(<!-- results: ([^>]*?) -->\n)(.*?)(<!-- /results -->)", re.S)


def caption(data, files):
    machine = data.get("machine", {})
    return (f"*{machine.get('cpu', 'unknown CPU')}, {machine.get('threads', '?')} threads, "
            f"commit {data.get('commit', '?')}, {data.get('date', '?')}; data: "
            + ", ".join(f"`{f}`" for f in files) + ".*")


def minutes(seconds):
    whole = int(round(seconds))
    return f"{whole // 60} min {whole % 60:02d} s"


def full_protocol(datas, files):
    """The whole default run per dtype: measures, cost, memory."""
    data = datas[0]
    rows = ["| dtype | F1 (95 % CI) | distance | misaligned cells | tokens computed | wall time | peak memory |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    for run in data["runs"]:
        lo, hi = run["f1_ci95"]
        rows.append(f"| {run['dtype']} | {run['f1']:.4f} ({lo:.4f}–{hi:.4f}) | {run['distance']:.4f} | "
                    f"{run['misaligned_cells']} / {run['cells']} | {run['computed_tokens']:,} | "
                    f"{minutes(run['wall_s'])} | {run['peak_rss_gb']:.2f} GB |")
    return rows + ["", caption(data, files)]


def lm_eval(datas, files):
    """lm-eval through `valuelens serve` against its own hf backend, one row per result file."""
    rows = ["| task | valuelens serve | acc / acc_norm | time | lm-eval `--model hf` | acc / acc_norm | time | valuelens faster by |",
            "|---|---|---|---:|---|---|---:|---:|"]
    for data in datas:
        ours, theirs = data["valuelens"], data["hf"]
        task = {"via_value_action": "two-choice", "via_value_action_4way": "4-way 5-shot"}.get(data["task"], data["task"])
        mode = {"f32": "`--dtype f32`", "bf16": "`--dtype bf16`"}.get(data["mode"], f"default ({data.get('serve_setting', '?').lower()})")
        rows.append(f"| {task} (`--limit {data['limit']}`) | {mode} | {ours['acc']:.3f} / {ours['acc_norm']:.3f} | "
                    f"{ours['seconds']:.1f} s | {data['hf_dtype']} | {theirs['acc']:.3f} / {theirs['acc_norm']:.3f} | "
                    f"{theirs['seconds']:.1f} s | {data['speedup']:.2f}× |")
    machine = datas[0].get("machine", {})
    commits = sorted({d.get("commit", "?") for d in datas})
    dates = sorted({d.get("date", "?") for d in datas})
    return rows + ["", f"*{machine.get('cpu', '?')}, {machine.get('threads', '?')} threads, commits "
                   f"{', '.join(commits)}, {', '.join(dates)}; data: " + ", ".join(f"`{f}`" for f in files) + ".*"]


def two_choice_bounds(datas, files):
    """What lm-eval's own time and the task's distinct tokens leave of issue 32's targets."""
    data = datas[0]
    t = data["targets"]
    bf16, f32 = t["default_vs_hf_bf16_3x"], t["f32_vs_hf_f32_2x"]
    rows = ["| target | hf measured | allowed | left for the server | needed | this machine |",
            "|---|---:|---:|---:|---:|---|",
            f"| default ≥ 3× hf bf16 | {bf16['hf_bf16_seconds_measured'][0]} s ({bf16['hf_bf16_seconds_measured'][1]} s) | "
            f"{bf16['allowed_seconds'][0]} s ({bf16['allowed_seconds'][1]} s) | {bf16['left_for_the_server_seconds'][0]} s "
            f"({bf16['left_for_the_server_seconds'][1]} s) | {bf16['needed_tflops'][1]} TFLOP/s | "
            f"best bf16 product: {bf16['best_bf16_product_measured_tflops']} TFLOP/s |",
            f"| f32 ≥ 2× hf f32 | {f32['hf_f32_seconds_measured']} s | {f32['allowed_seconds']} s | "
            f"{f32['left_for_the_server_seconds']} s | {f32['needed_gflops_in_products_alone']} GFLOP/s | "
            f"f32 FMA peak: {f32['f32_fma_peak_gflops']} GFLOP/s |",
            "",
            f"lm-eval's own time: {data['client_floor_seconds']} s of every run; "
            f"{data['tokens']['distinct_prefix_nodes']:,} distinct tokens of {data['tokens']['sent']:,} sent.",
            "", caption(data, files)]
    return rows


def llama_cpp(datas, files):
    """valuelens against llama.cpp's llama-bench on the same GGUF files, one sitting."""
    data = datas[0]
    rows = ["| file | llama.cpp pp512 tok/s | valuelens computed tok/s (dtype) | valuelens / llama.cpp | peak RSS llama.cpp / valuelens (× file) |",
            "|---|---:|---:|---:|---|"]
    for run in data["runs"]:
        ours, theirs = run["valuelens"], run["llama_cpp"]
        size = run["file_bytes"]
        rows.append(f"| {os.path.basename(run['file'])} ({size / 1e9:.2f} GB) | {theirs['tokens_per_s']:.1f} | "
                    f"{ours['tokens_per_s']:.1f} ({ours['dtype']}) | {ours['tokens_per_s'] / theirs['tokens_per_s']:.2f}× | "
                    f"{theirs['peak_rss_bytes'] / 1e9:.2f} GB ({theirs['peak_rss_bytes'] / size:.2f}×) / "
                    f"{ours['peak_rss_bytes'] / 1e9:.2f} GB ({ours['peak_rss_bytes'] / size:.2f}×) |")
    cpu = data.get("cpu", {})
    return rows + ["", f"*{cpu.get('model', '?')}, {data.get('threads', '?')} threads, valuelens commit "
                   f"{data.get('valuelens', {}).get('commit', '?')}, llama.cpp {data.get('llama_cpp', {}).get('version', '?').split('commit ')[-1].split(')')[0]}, "
                   f"{data.get('date', '?')[:10]}; data: " + ", ".join(f"`{f}`" for f in files) + ".*"]


def table(datas, files):
    """A table kept as data (`FILE.json#NAME`: its columns, alignment and rows, as measured)."""
    data, name = datas[0], files[0].split("#", 1)[1]
    t = data["tables"][name]
    rows = ["| " + " | ".join(t["columns"]) + " |", "|" + "|".join(t["align"]) + "|"]
    rows += ["| " + " | ".join(row) + " |" for row in t["rows"]]
    return rows + ["", caption(data, [files[0]])]


RENDERERS = {
    "table": table,
    "llama-cpp": llama_cpp,
    "full-protocol": full_protocol,
    "lm-eval": lm_eval,
    "two-choice-bounds": two_choice_bounds,
}


def render_block(root, spec, where):
    kind, *files = spec.split()
    if kind not in RENDERERS:
        raise SystemExit(f"{where}: unknown results kind '{kind}' (known: {', '.join(RENDERERS)})")
    datas = []
    for f in files:
        path = os.path.join(root, f.split("#", 1)[0])
        try:
            with open(path, encoding="utf-8") as handle:
                datas.append(json.load(handle))
        except (OSError, ValueError) as e:
            raise SystemExit(f"{where}: cannot read {f}: {e}")
    return "\n".join(RENDERERS[kind](datas, files)) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 where a table differs from its data")
    parser.add_argument("--root", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    args = parser.parse_args()
    pages = [os.path.join(args.root, "README.md")] + sorted(glob.glob(os.path.join(args.root, "docs", "*.md")))
    stale, blocks = [], 0
    for page in pages:
        with open(page, encoding="utf-8") as handle:
            text = handle.read()

        def replace(match):
            nonlocal blocks
            blocks += 1
            line = text[:match.start()].count("\n") + 1
            where = f"{os.path.relpath(page, args.root)} line {line}"
            rendered = render_block(args.root, match.group(2), where)
            if rendered != match.group(3):
                stale.append(f"{where} ({match.group(2).split()[0]})")
            return match.group(1) + rendered + match.group(4)

        new = BLOCK.sub(replace, text)
        if not args.check and new != text:
            with open(page + ".tmp", "w", encoding="utf-8") as handle:
                handle.write(new)
            os.replace(page + ".tmp", page)
    if args.check and stale:
        for where in stale:
            print(f"{where}: the table differs from its data; run scripts/render-results.py", file=sys.stderr)
        sys.exit(1)
    print(f"{blocks} result tables {'checked' if args.check else 'rendered'}")


if __name__ == "__main__":
    main()
