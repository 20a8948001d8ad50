"""Writes the data of two lm-evaluation-harness tasks built from the VIA CSV beside this file.

via_value_action.jsonl (two choices): for each (country, topic, value) the VIA dataset has an
action that shows the value (polarity "positive") and one that does not ("negative"); the
question asks which action shows the value, and the gold answer is the positive one. The order
of the two choices alternates, so that always answering the first (or the second) option
scores 50 %.

via_value_action_4way.jsonl and via_value_action_4way_shots.jsonl (four choices, asked
5-shot): the positive action against three negative ones (this value's and those of the next
two values of the same country and topic), the gold answer's place rotating over the four; the
first 20 questions are the few-shot examples (the `shots` file) and are left out of the test
file. Every question is preceded by the same five solved examples, so its context is long and
shared: the shape of few-shot multiple-choice benchmarks such as MMLU.

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
    write_four_way(here, pairs)
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


def write_four_way(here, pairs):
    complete = [(key, actions) for key, actions in pairs.items()
                if "positive" in actions and "negative" in actions]
    by_situation = {}
    for (country, topic, value), actions in complete:
        by_situation.setdefault((country, topic), []).append(actions["negative"])
    docs = []
    for (country, topic, value), actions in complete:
        negatives = by_situation[(country, topic)]
        own = negatives.index(actions["negative"])
        others = [negatives[(own + k) % len(negatives)] for k in (1, 2)]
        if len(negatives) < 3 or len(set(others + [actions["negative"]])) < 3:
            continue
        wrong = [actions["negative"]] + others
        gold = len(docs) % 4
        choices = wrong[:gold] + [actions["positive"]] + wrong[gold:]
        docs.append({"country": country, "topic": topic, "value": value,
                     "choices": choices, "gold": gold})
    shots, test = docs[:20], docs[20:]
    for name, part in (("via_value_action_4way_shots.jsonl", shots),
                       ("via_value_action_4way.jsonl", test)):
        out = os.path.join(here, name)
        with open(out + ".tmp", "w", encoding="utf-8") as f:
            for doc in part:
                f.write(json.dumps(doc, ensure_ascii=False) + "\n")
        os.replace(out + ".tmp", out)
        print(f"{out}: {len(part)} questions")


if __name__ == "__main__":
    main()
