#!/usr/bin/env python3
"""The chat-template fixtures of tests/chat_templates.rs (tests/fixtures/chat_templates/): each
family's real template, rendered by HF transformers (`render_jinja_template`, what
`apply_chat_template` calls) on 3-turn conversations.

Not for CI (it needs transformers). The templates are the models' own, as their public
tokenizer_config.json files carry them; llama.cpp keeps copies (models/templates/*.jinja and, for
Mistral-7B-Instruct, tests/test-chat-template.cpp), which this script reads:

    ../ref-env/bin/python scripts/make_template_fixtures.py --llama-cpp LLAMA_CPP_DIR

Every rendering passes the variables valuelens passes: `date_string` fixed at "26 Jul 2024" (the
Llama templates' own fallback, so that a prompt does not change with the day it is rendered) and
`enable_thinking` (Qwen3's switch) as the case says.
"""

import argparse
import json
import os
import re

from transformers.utils.chat_template_utils import render_jinja_template

WITH_SYSTEM = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Hello, who are you?"},
    {"role": "assistant", "content": "I am an assistant."},
    {"role": "user", "content": "Which of these values matters most to you: honesty or loyalty?"},
]
WITHOUT_SYSTEM = WITH_SYSTEM[1:]


def mistral_v02_template(llama_cpp):
    """Mistral-7B-Instruct-v0.2/v0.3's template as llama.cpp's template tests quote it."""
    text = open(os.path.join(llama_cpp, "tests", "test-chat-template.cpp"), encoding="utf-8").read()
    marker = "mistralai/Mistral-7B-Instruct-v0.2 (mistralai 'v1' template with a system prompt)"
    after = text.split(marker, 1)[1]
    literal = re.search(r'\.template_str= \*/ ("(?:[^"\\]|\\.)*")', after).group(1)
    return json.loads(literal)


def families(llama_cpp):
    templates = os.path.join(llama_cpp, "models", "templates")

    def read(name):
        return open(os.path.join(templates, name), encoding="utf-8").read()

    return {
        "llama3.1": dict(template=read("meta-llama-Llama-3.1-8B-Instruct.jinja"),
                         bos="<|begin_of_text|>", eos="<|eot_id|>", messages=WITH_SYSTEM),
        "llama3.2": dict(template=read("meta-llama-Llama-3.2-3B-Instruct.jinja"),
                         bos="<|begin_of_text|>", eos="<|eot_id|>", messages=WITHOUT_SYSTEM),
        "mistral": dict(template=mistral_v02_template(llama_cpp), bos="<s>", eos="</s>",
                        messages=WITH_SYSTEM),
        "gemma2": dict(template=read("google-gemma-2-2b-it.jinja"), bos="<bos>", eos="<eos>",
                       messages=WITHOUT_SYSTEM),
        "qwen3-no-thinking": dict(template=read("Qwen-Qwen3-0.6B.jinja"), bos="",
                                  eos="<|im_end|>", messages=WITH_SYSTEM,
                                  variables={"enable_thinking": False}),
        "qwen3-thinking": dict(template=read("Qwen-Qwen3-0.6B.jinja"), bos="", eos="<|im_end|>",
                               messages=WITH_SYSTEM, variables={"enable_thinking": True}),
        "phi3.5": dict(template=read("microsoft-Phi-3.5-mini-instruct.jinja"), bos="<s>",
                       eos="<|endoftext|>", messages=WITH_SYSTEM),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--llama-cpp", required=True)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests",
                                                  "fixtures", "chat_templates"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for name, f in families(args.llama_cpp).items():
        variables = {"date_string": "26 Jul 2024", **f.get("variables", {})}
        rendered = render_jinja_template(
            conversations=[f["messages"]], chat_template=f["template"],
            add_generation_prompt=True, bos_token=f["bos"], eos_token=f["eos"], **variables)[0][0]
        fixture = {"template": f["template"], "bos_token": f["bos"], "eos_token": f["eos"],
                   "messages": f["messages"], "add_generation_prompt": True,
                   "variables": variables, "rendered": rendered}
        with open(os.path.join(args.out, f"{name}.json"), "w", encoding="utf-8") as out:
            json.dump(fixture, out, indent=1, ensure_ascii=False)
            out.write("\n")
        print(name, repr(rendered[:120]))


if __name__ == "__main__":
    main()
