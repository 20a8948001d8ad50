#!/usr/bin/env python3
"""Hard choices of two scorings of one multiple-choice request file, side by side.

Each request id ends in `|<option>` (as in ../shared/workloads/*.jsonl); requests sharing the
rest of the id are one question. A question's hard choice is its option with the largest
log-probability (ties: the first). Prints how many questions both scorings answer the same
way, and the mean |Δ| of the options' log-probabilities.

usage: scripts/hard_choices.py REFERENCE.jsonl TESTED.jsonl   (valuelens score outputs)
"""
import json
import sys
from collections import defaultdict


def choices(path):
    questions = defaultdict(list)
    logprobs = {}
    with open(path) as f:
        for line in f:
            score = json.loads(line)
            question, option = score["id"].rsplit("|", 1)
            questions[question].append((score["logprob"], option))
            logprobs[score["id"]] = score["logprob"]
    best = {q: max(options, key=lambda o: o[0])[1] for q, options in questions.items()}
    return best, logprobs


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    reference, ref_logprobs = choices(sys.argv[1])
    tested, tested_logprobs = choices(sys.argv[2])
    if reference.keys() != tested.keys():
        sys.exit("the two files hold different questions")
    same = sum(reference[q] == tested[q] for q in reference)
    delta = sum(abs(ref_logprobs[i] - tested_logprobs[i]) for i in ref_logprobs) / len(ref_logprobs)
    print(json.dumps({
        "questions": len(reference),
        "same_hard_choice": same,
        "agreement": same / len(reference),
        "mean_abs_logprob_diff": delta,
    }))


if __name__ == "__main__":
    main()
