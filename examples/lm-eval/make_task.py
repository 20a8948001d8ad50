"""Writes via_value_action.jsonl beside this file: a two-choice lm-evaluation-harness task
built from the VIA CSV. For each (country, topic, value) the VIA dataset has an action that
shows the value (polarity "positive") and one that does not ("negative"); the question asks
which action shows the value, and the gold answer is the positive one. The order of the two
choices alternates, so that always answering the first (or the second) option scores 50 %.

usage: python3 make_task.py [VIA_CSV]   (default: data/value_action_gap_full_data_generation.csv)
"""

import csv
import json
import os
import re
import sys

ACTION = re.compile(r'"Human Action"\s*:\s*"((?:[^"\\]|\\.)*)"')


def action_of(prompt):
    match = ACTION.search(prompt)
    return json.loads(f'"{match.group(1)}"') if match else None


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    source = sys.argv[1] if len(sys.argv) > 1 else "data/value_action_gap_full_data_generation.csv"
    pairs = {}
    with open(source, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            action = action_of(row["generation_prompt"])
            if action:
                key = (row["country"], row["topic"], row["value"])
                pairs.setdefault(key, {})[row["polarity"]] = action
    out = os.path.join(here, "via_value_action.jsonl")
    written = 0
    with open(out + ".tmp", "w", encoding="utf-8") as f:
        for (country, topic, value), actions in pairs.items():
            if "positive" not in actions or "negative" not in actions:
                continue
            choices = [actions["positive"], actions["negative"]]
            gold = 0
            if written % 2 == 1:
                choices.reverse()
                gold = 1
            doc = {"country": country, "topic": topic, "value": value,
                   "choices": choices, "gold": gold}
            f.write(json.dumps(doc, ensure_ascii=False) + "\n")
            written += 1
    os.replace(out + ".tmp", out)
    print(f"{out}: {written} questions")


if __name__ == "__main__":
    main()
