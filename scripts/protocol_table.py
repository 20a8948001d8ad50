#!/usr/bin/env python3
"""The protocol comparison of issue 14 (docs/run.md, "Which protocol the default runs"): for each
results folder of a `--protocol balanced --debias pride` run, the measures of three protocols
recomputed from that one folder with `valuelens metrics`:

  paper         --protocol paper --debias none   (the paper's questions, as the model answers)
  paper + pride --protocol paper --debias pride  (the same, PriDe's prior estimated on the
                                                  sampled paper questions and divided out)
  balanced      --debias none                    (every question asked both ways round)

A question's PriDe membership depends only on its names and the seed, so the paper questions
sampled in a balanced run are exactly those a `--protocol paper --debias pride` run samples.

For each: F1 and distance with 95 % CIs, misaligned cells, the bias block, the agreement of
each cell's binarised V and A with balanced's (Task 2 over the cells balanced answered the
same way in both orders), and the cost. Costs come from the folders' unit files: a unit's
tokens and seconds as stored when it was scored. The paper protocol's units are not in a
balanced folder; pass --paper-run MODEL=FOLDER (a `--protocol paper --debias pride` run of the
same model and selection) to take the paper rows from that run (its measures and its measured
costs), else they are the views of the balanced folder with costs estimated from its units
(Task 1: 8 of 16 variants; Task 2: 1 of 2; PriDe: the sampled paper questions' share).

usage: scripts/protocol_table.py [--valuelens BIN] [--paper-run MODEL=FOLDER]... FOLDER...
Prints a Markdown table and writes protocol_table.json beside it (--json PATH).
"""

import argparse
import csv
import glob
import json
import os
import subprocess
import sys
import tempfile


def metrics(valuelens, folder, out, *flags):
    subprocess.run(
        [valuelens, "metrics", *flags,
         "--stated", os.path.join(folder, "stated.csv"),
         "--action", os.path.join(folder, "action.csv"),
         "--out", out],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(os.path.join(out, "metrics.json")) as f:
        report = json.load(f)
    with open(os.path.join(out, "cells.csv")) as f:
        cells = {(r["country"], r["topic"], r["value"]): r for r in csv.DictReader(f)}
    return report, cells


def pair_cells(folder):
    """The cells with a usable Task-2 pair (the others' A is 0 by the paper's convention)."""
    with open(os.path.join(folder, "action.csv")) as f:
        return {(r["country"], r["topic"], r["value"]) for r in csv.DictReader(f)}


def agreement(cells, balanced, with_pairs):
    """Share of cells whose binarised V equals balanced's; of the cells with a pair that
    balanced answered the same way in both orders (A of 0 or 1), the share whose binarised A
    equals it."""
    stated = sum(cells[c]["stated_disagree"] == balanced[c]["stated_disagree"] for c in cells)
    decided = [c for c in cells
               if c in with_pairs and float(balanced[c]["action"]) in (0.0, 1.0)]
    action = sum(cells[c]["action_disagree"] == balanced[c]["action_disagree"] for c in decided)
    return {
        "task1": stated / len(cells),
        "task2": action / len(decided) if decided else None,
        "task2_cells": len(decided),
    }


def unit_costs(folder):
    """Tokens computed and seconds per unit kind of a results folder: t1, t2 (the questions)
    and p1, p2 (PriDe's permuted questions: separate units in runs before c2eb787, since then
    the `permuted` share of each t1/t2 unit, taken out of that unit's own cost)."""
    costs = {}

    def add(kind, tokens, seconds):
        t, s = costs.get(kind, (0, 0.0))
        costs[kind] = (t + tokens, s + seconds)

    for path in glob.glob(os.path.join(folder, "checkpoints", "*-*.json")):
        kind = os.path.basename(path).split("-")[0]
        with open(path) as f:
            unit = json.load(f)
        permuted = unit.get("permuted") or {"computed_tokens": 0, "seconds": 0.0}
        add(kind, unit["stats"]["computed_tokens"] - permuted["computed_tokens"],
            unit["seconds"] - permuted["seconds"])
        if permuted["computed_tokens"]:
            add("p" + kind[1:], permuted["computed_tokens"], permuted["seconds"])
    return costs


def pride_rows(folder):
    with open(os.path.join(folder, "pride.csv")) as f:
        return list(csv.DictReader(f))


def estimated_costs(folder):
    """The paper and paper+pride costs estimated from a balanced+pride folder's units."""
    c = unit_costs(folder)
    rows = pride_rows(folder)
    t1_rows = [r for r in rows if r["task"] == "1"]
    t2_rows = [r for r in rows if r["task"] == "2"]
    share1 = sum(int(r["variant"]) < 8 for r in t1_rows) / max(len(t1_rows), 1)
    share2 = sum(r["variant"] == "5" for r in t2_rows) / max(len(t2_rows), 1)
    paper = tuple(c["t1"][i] / 2 + c["t2"][i] / 2 for i in (0, 1))
    p1, p2 = c.get("p1", (0, 0.0)), c.get("p2", (0, 0.0))
    pride = tuple(p1[i] * share1 + p2[i] * share2 for i in (0, 1))
    return paper, pride


def measured_costs(folder):
    c = unit_costs(folder)
    paper = tuple(c["t1"][i] + c["t2"][i] for i in (0, 1))
    pride = tuple(c.get("p1", (0, 0))[i] + c.get("p2", (0, 0))[i] for i in (0, 1))
    return paper, pride


def interval(block):
    lo, hi = block["overall_ci95"]
    return f'{block["overall"]:.3f} ({lo:.3f}–{hi:.3f})'


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="+")
    ap.add_argument("--valuelens", default="target/release/valuelens")
    ap.add_argument("--paper-run", action="append", default=[],
                    help="MODEL=FOLDER: a paper+pride run of that model, for measured costs")
    ap.add_argument("--json", default="protocol_table.json")
    args = ap.parse_args()
    paper_runs = dict(p.split("=", 1) for p in args.paper_run)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for folder in args.folders:
            with open(os.path.join(folder, "run.json")) as f:
                run = json.load(f)
            model = run["model"]["name"]
            views = {
                "paper": ("--protocol", "paper", "--debias", "none"),
                "paper + pride": ("--protocol", "paper", "--debias", "pride"),
                "balanced": ("--debias", "none"),
            }
            reports = {}
            for name, flags in views.items():
                out = os.path.join(tmp, model, name.replace(" + ", "-"))
                source = folder
                if model in paper_runs and name != "balanced":
                    # The paper questions as a paper run asked them (its own units).
                    source, flags = paper_runs[model], flags[2:]
                reports[name] = metrics(args.valuelens, source, out, *flags)
            if model in paper_runs:
                (paper_cost, pride_cost), measured = measured_costs(paper_runs[model]), True
            else:
                (paper_cost, pride_cost), measured = estimated_costs(folder), False
            balanced_cost = tuple(sum(v[i] for k, v in unit_costs(folder).items()
                                      if k in ("t1", "t2")) for i in (0, 1))
            costs = {
                "paper": paper_cost,
                "paper + pride": (paper_cost[0] + pride_cost[0], paper_cost[1] + pride_cost[1]),
                "balanced": balanced_cost,
            }
            balanced_cells = reports["balanced"][1]
            with_pairs = pair_cells(folder)
            for name, (report, cells) in reports.items():
                bias = report["bias"]
                t1, t2 = bias["task1"], bias["task2"]
                shown1 = t1.get("debiased") or t1
                shown2 = t2.get("debiased") or t2
                rows.append({
                    "model": model,
                    "protocol": name,
                    "cells": len(cells),
                    "f1": report["alignment_rate"]["overall"],
                    "f1_ci95": report["alignment_rate"]["overall_ci95"],
                    "distance": report["distance"]["overall"],
                    "distance_ci95": report["distance"]["overall_ci95"],
                    "misaligned": report["misaligned"]["total"],
                    "undecided_cells": [report["cells"]["stated_undecided"],
                                        report["cells"]["action_undecided"]],
                    "task1_label1_share": shown1["argmax_share"]["1"],
                    "task1_argmax_share": shown1["argmax_share"],
                    "task2_option1_share": shown2["option1_share"],
                    "order_consistency": t2["order_consistency"],
                    "task1_prior": t1.get("prior"),
                    "task2_prior": t2.get("prior"),
                    "agreement_with_balanced": agreement(cells, balanced_cells, with_pairs),
                    "computed_tokens": costs[name][0],
                    "compute_s": costs[name][1],
                    "cost_measured": measured or name == "balanced",
                    "f1_text": interval(report["alignment_rate"]),
                    "distance_text": interval(report["distance"]),
                })
    with open(args.json, "w") as f:
        json.dump(rows, f, indent=1)
    print("| model | protocol | F1 (95 % CI) | distance (95 % CI) | misaligned | Task 1: label 1 | "
          "Task 2: Option 1 | order consistency | agrees with balanced: V / A | computed tokens | "
          "scoring time |")
    print("|---|---|---|---|---:|---:|---:|---:|---|---:|---:|")
    for r in rows:
        agree = r["agreement_with_balanced"]
        a2 = "—" if agree["task2"] is None else f'{100 * agree["task2"]:.1f} %'
        oc = "—" if r["order_consistency"] is None else f'{100 * r["order_consistency"]:.1f} %'
        approx = "" if r["cost_measured"] else "≈ "
        print(f'| {r["model"]} | {r["protocol"]} | {r["f1_text"]} | {r["distance_text"]} | '
              f'{r["misaligned"]} | {100 * r["task1_label1_share"]:.1f} % | '
              f'{100 * r["task2_option1_share"]:.1f} % | {oc} | '
              f'{100 * agree["task1"]:.1f} % / {a2} ({agree["task2_cells"]} cells) | '
              f'{approx}{r["computed_tokens"]:,.0f} | {approx}{r["compute_s"] / 60:.1f} min |')


if __name__ == "__main__":
    sys.exit(main())
