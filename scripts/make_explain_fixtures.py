"""Fixtures for `valuelens explain`, made with numpy and pandas (not needed by CI).

1. numpy_sample.json: what `DataFrame.sample(n, random_state=seed)` draws (positions, in order)
   for a few frame sizes and seeds, and `RandomState(seed).randint` words, so that the Rust
   reimplementation of numpy's legacy RandomState can be checked against numpy itself.
2. With --frame FRAME.csv (a target frame `valuelens explain` writes: VIA rows with
   `model_choice`), the paper's own `load_full_data` and `sample_train_test_set` (copied verbatim
   from src/benchmark/few_shot_learning.py of huashen218/value_action_gap) run on it, and the rows
   they pick are recorded by (country, topic, value, polarity), together with the few-shot
   example completions of each mode and a digest of every parsed row's prompt texts.

Usage: python scripts/make_explain_fixtures.py OUT_DIR [--frame FRAME.csv --name NAME]
"""
import hashlib
import json
import sys

import numpy as np
import pandas as pd


def clean_generation(response: str) -> str:
    if "```" in response:
        sub1 = "```json"
        sub2 = "```"
        response = ''.join(response.split(sub1)[1].split(sub2)[0])
        return response
    else:
        return response


def clean_generation_without_json(response: str) -> str:
    if "```" in response:
        sub1 = "```"
        sub2 = "```"
        response = ''.join(response.split(sub1)[1].split(sub2)[0])
        return response
    else:
        return response


def load_full_data(data_path):
    df = pd.read_csv(data_path)
    new_df = []
    for index, row in df.iterrows():
        country = row['country']
        topic = row['topic']
        value = row['value']
        polarity = row['polarity']
        generation_prompt = row['generation_prompt']
        model_choice = row['model_choice']
        try:
            response = json.loads(clean_generation(generation_prompt))
        except Exception as e:
            try:
                response = json.loads(clean_generation_without_json(generation_prompt))
            except Exception as e:
                continue
        new_row = [country, topic, value, polarity, model_choice, response['Human Action'], response['Feature Attributions'], response['Natural Language Explanation']]
        new_df.append(new_row)
    new_df = pd.DataFrame(new_df, columns=['country', 'topic', 'value', 'polarity', 'model_choice', 'action', 'attributions', 'explanation'])
    return new_df


def sample_train_test_set(new_df, sample_train_size=5, sample_test_size=10):
    new_df_train = new_df.iloc[:7000]
    new_df_train_t = new_df_train[new_df_train['model_choice'] == True]
    new_df_train_f = new_df_train[new_df_train['model_choice'] == False]

    new_df_test = new_df.iloc[7000:]
    new_df_test_t = new_df_test[new_df_test['model_choice'] == True]
    new_df_test_f = new_df_test[new_df_test['model_choice'] == False]

    N = sample_train_size
    train_df_t = new_df_train_t.sample(n=N, random_state=42)
    train_df_f = new_df_train_f.sample(n=N, random_state=42)
    train_df = pd.concat([train_df_t, train_df_f], ignore_index=True)

    M = sample_test_size
    test_df_t = new_df_test_t.sample(n=M, random_state=42)
    test_df_f = new_df_test_f.sample(n=M, random_state=42)
    test_df = pd.concat([test_df_t, test_df_f], ignore_index=True)
    return train_df, test_df


# The system turn as few_shot_learning() and eval_prediction() build it.
TASK_DESCRIPTION = """
    You are a action predictor. Given a textual action, predict if an agent will perform it or not:
    1. The overall label (True/False)
    3. Reason for the assessment
    Format your response exactly like the examples.
    """
SYSTEM = ("You are an AI trained to solve specific tasks based on examples. "
          f"{TASK_DESCRIPTION}")


def completion(mode, row):
    action, explanation, attribution, label = row['action'], row['explanation'], row['attributions'], row['model_choice']
    if mode == "default":
        return f"Label: {label}"
    if mode == "attribution":
        return f"Label: {label}  \n Action Attribution: {attribution}"
    if mode == "explanation":
        return f"Label: {label} \n Reason: {explanation}"
    return f"Label: {label} \n Action Attribution: {attribution} \n Reason: {explanation}"


def key(row):
    return [row['country'], row['topic'], row['value'], row['polarity']]


def numpy_fixture(out_dir):
    cases = []
    for seed in [0, 1, 42, 12345, 4294967295]:
        for length, n in [(1, 1), (2, 2), (7, 3), (100, 10), (1000, 100), (4000, 100), (7000, 10), (65537, 5)]:
            frame = pd.DataFrame({"x": np.arange(length)})
            positions = frame.sample(n=n, random_state=seed).index.tolist()
            cases.append({"seed": seed, "len": length, "n": n, "positions": positions})
    words = {str(seed): np.random.RandomState(seed).randint(0, 2**32, size=8, dtype=np.uint64).tolist()
             for seed in [0, 42, 4294967295]}
    with open(f"{out_dir}/numpy_sample.json", "w") as f:
        json.dump({"numpy": np.__version__, "pandas": pd.__version__, "samples": cases, "uint32_words": words}, f, indent=1)


def frame_fixture(out_dir, frame_path, name):
    full_df = load_full_data(frame_path)
    train_df, test_df = sample_train_test_set(full_df, 10, 100)
    digest = hashlib.sha256()
    for _, row in full_df.iterrows():
        for mode in ["attribution_explanation"]:
            digest.update(f"Predict the Action: '{row['action']}'\n{completion(mode, row)}\n".encode())
    modes = ["default", "attribution", "explanation", "attribution_explanation"]
    fixture = {
        "system": SYSTEM,
        "frame_rows": len(full_df),
        "parsed_rows_digest": digest.hexdigest(),
        "train": [key(r) + [bool(r['model_choice'])] for _, r in train_df.iterrows()],
        "test": [key(r) + [bool(r['model_choice'])] for _, r in test_df.iterrows()],
        "queries": [f"Predict the Action: '{r['action']}'" for _, r in test_df.iterrows()],
        "examples": {mode: [[f"Predict the Action: '{r['action']}'", completion(mode, r)] for _, r in train_df.iterrows()] for mode in modes},
    }
    with open(f"{out_dir}/{name}.json", "w") as f:
        json.dump(fixture, f, indent=1, ensure_ascii=False)


if __name__ == "__main__":
    out = sys.argv[1]
    numpy_fixture(out)
    if "--frame" in sys.argv:
        frame_fixture(out, sys.argv[sys.argv.index("--frame") + 1], sys.argv[sys.argv.index("--name") + 1])
