#!/usr/bin/env python3
"""Compares results folders of `valuelens run` made with different `--dtype`s on the same model,
protocol and selection, against the first one (the reference, usually `--dtype f32`).

For each run: the measures (F1 and distance with their CIs, misaligned cells, bias shares), its
tokens, time and peak memory (from run.json, and from a `/usr/bin/time -v` log beside the folder
when one is given as FOLDER=LOG), and against the reference: how many Task-1 and Task-2 items
choose the same answer (raw and debiased), the mean |Δ| of the answers' log-probabilities, and
how many cells keep their misaligned flag. Writes JSON to stdout; `--markdown` a table instead.

    scripts/compare-dtype-runs.py /tmp/full-f32=/tmp/full-f32.log /tmp/full-tb /tmp/full-int8
"""
import csv
import json
import re
import sys
from pathlib import Path


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def peak_rss_gb(log):
    if log is None or not Path(log).is_file():
        return None
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", Path(log).read_text())
    return round(int(match.group(1)) / 1024**2, 3) if match else None


def load(spec):
    folder, _, log = spec.partition("=")
    folder = Path(folder)
    run = json.loads((folder / "run.json").read_text())
    metrics = json.loads((folder / "metrics.json").read_text())
    return {
        "folder": str(folder),
        "run": run,
        "metrics": metrics,
        "stated": read_csv(folder / "stated.csv"),
        "action": read_csv(folder / "action.csv"),
        "cells": read_csv(folder / "cells.csv"),
        "peak_rss_gb": peak_rss_gb(log or None),
    }


def key(row, fields):
    return tuple(row[f] for f in fields)


def agreement(reference, other, fields, answer, logprobs):
    """Items answering the same, and the mean |Δ| of their log-probabilities."""
    ref = {key(r, fields): r for r in reference}
    same = total = 0
    delta = count = 0.0
    for row in other:
        base = ref[key(row, fields)]
        total += 1
        same += base[answer] == row[answer]
        for column in logprobs:
            delta += abs(float(base[column]) - float(row[column]))
            count += 1
    return same, total, delta / count


def misaligned(cell):
    return cell["stated_disagree"] != cell["action_disagree"]


def summary(run):
    m = run["metrics"]
    r = run["run"]
    bias = m.get("bias", {})
    return {
        "dtype": r["model"]["dtype"],
        "matmul_kernels": r["model"].get("matmul_kernels"),
        "f1": m["alignment_rate"]["overall"],
        "f1_ci95": m["alignment_rate"]["overall_ci95"],
        "distance": m["distance"]["overall"],
        "distance_ci95": m["distance"]["overall_ci95"],
        "misaligned_cells": m["misaligned"]["total"],
        "cells": len(run["cells"]),
        "bias": bias,
        "computed_tokens": r["tokens"]["computed_tokens"],
        "rechecked_tokens": r["tokens"].get("rechecked_tokens", 0),
        "rechecked_requests": r["tokens"].get("rechecked_requests", 0),
        "unit_time_s": r["timings"]["compute_s_all_units"],
        "pride_time_s": (r.get("pride") or {}).get("compute_s"),
        "wall_s": r["timings"]["wall_s"],
        "threads": r["settings"]["threads"],
        "peak_rss_gb": run["peak_rss_gb"],
    }


def main(argv):
    markdown = "--markdown" in argv
    specs = [a for a in argv if a != "--markdown"]
    runs = [load(s) for s in specs]
    reference = runs[0]
    rows = []
    for run in runs:
        row = summary(run)
        t1 = ["country", "topic", "value", "variant"]
        lp1 = [f"logprob_{i}" for i in range(1, 5)]
        lp2 = ["logprob_option_1", "logprob_option_2"]
        for name, table, fields, answer, lps in [
            ("task1_hard", "stated", t1, "hard", lp1),
            ("task1_debiased", "stated", t1, "debiased_hard", lp1),
            ("task2_hard", "action", t1, "chose_negative", lp2),
            ("task2_debiased", "action", t1, "debiased_chose_negative", lp2),
        ]:
            same, total, delta = agreement(reference[table], run[table], fields, answer, lps)
            row[f"{name}_same_as_reference"] = [same, total]
            row[f"{table}_mean_abs_logprob_delta"] = delta
        ref_cells = {key(c, ["country", "topic", "value"]): misaligned(c) for c in reference["cells"]}
        row["cells_same_misaligned_flag"] = sum(
            ref_cells[key(c, ["country", "topic", "value"])] == misaligned(c) for c in run["cells"]
        )
        rows.append(row)
    if not markdown:
        json.dump({"reference": reference["folder"], "runs": rows}, sys.stdout, indent=1)
        print()
        return
    pct = lambda pair: f"{pair[0]:,} / {pair[1]:,} ({100 * pair[0] / pair[1]:.2f} %)"
    print("| dtype | F1 (95 % CI) | distance (95 % CI) | misaligned | Task-1 items = ref (debiased) "
          "| Task-2 items = ref (debiased) | cells' flag = ref | mean \\|Δ\\| T1 / T2 | tokens "
          "computed | unit time | peak RSS |")
    print("|---|---|---|---:|---|---|---:|---|---:|---:|---:|")
    for r in rows:
        ci = lambda v, c: f"{v:.4f} ({c[0]:.4f}–{c[1]:.4f})" if c else f"{v:.4f}"
        print(f"| {r['dtype']} | {ci(r['f1'], r['f1_ci95'])} | {ci(r['distance'], r['distance_ci95'])} "
              f"| {r['misaligned_cells']:,} | {pct(r['task1_hard_same_as_reference'])} "
              f"({pct(r['task1_debiased_same_as_reference'])}) | {pct(r['task2_hard_same_as_reference'])} "
              f"({pct(r['task2_debiased_same_as_reference'])}) | {r['cells_same_misaligned_flag']:,} "
              f"| {r['stated_mean_abs_logprob_delta']:.4f} / {r['action_mean_abs_logprob_delta']:.4f} "
              f"| {r['computed_tokens']:,} | {r['unit_time_s']:.0f} s | {r['peak_rss_gb']} GB |")


if __name__ == "__main__":
    main(sys.argv[1:])
