//! The chat templates of the model families valuelens runs, rendered as transformers renders
//! them: each family's real template (as its tokenizer_config.json carries it) on a 3-turn
//! conversation, byte for byte against transformers' own rendering
//! (`tests/fixtures/chat_templates/`, made by `scripts/make_template_fixtures.py`).

use std::path::PathBuf;

use serde::Deserialize;
use serde_json::{Map, Value};
use valuelens::prompts::chat::{benchmark_variables, ChatMessage, ChatTemplate};

#[derive(Deserialize)]
struct Fixture {
    template: String,
    bos_token: String,
    eos_token: String,
    messages: Vec<ChatMessage>,
    add_generation_prompt: bool,
    variables: Map<String, Value>,
    rendered: String,
}

fn fixture(name: &str) -> Fixture {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/chat_templates")
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn renders_as_transformers(name: &str) {
    let f = fixture(name);
    let template = ChatTemplate::new(&f.template, &f.bos_token, &f.eos_token, name).unwrap();
    let rendered = template
        .render(&f.messages, f.add_generation_prompt, &f.variables)
        .unwrap();
    assert_eq!(rendered, f.rendered, "{name}");
}

#[test]
fn llama_3_1() {
    renders_as_transformers("llama3.1");
}

#[test]
fn llama_3_2() {
    renders_as_transformers("llama3.2");
}

#[test]
fn mistral_7b_instruct() {
    renders_as_transformers("mistral");
}

#[test]
fn gemma_2() {
    renders_as_transformers("gemma2");
}

#[test]
fn qwen3_without_thinking() {
    renders_as_transformers("qwen3-no-thinking");
}

#[test]
fn qwen3_with_thinking() {
    renders_as_transformers("qwen3-thinking");
}

#[test]
fn phi_3_5() {
    renders_as_transformers("phi3.5");
}

/// The benchmark's prompts do not depend on the day (the Llama templates' date is fixed) and
/// switch Qwen3's thinking off: an empty thinking block precedes the answer.
#[test]
fn benchmark_prompts_fix_the_date_and_switch_thinking_off() {
    let llama = fixture("llama3.2");
    let template =
        ChatTemplate::new(&llama.template, &llama.bos_token, &llama.eos_token, "llama").unwrap();
    let prompt = template.render_user("Which value?").unwrap();
    assert!(prompt.contains("Today Date: 26 Jul 2024"), "{prompt}");
    let qwen = fixture("qwen3-no-thinking");
    let template =
        ChatTemplate::new(&qwen.template, &qwen.bos_token, &qwen.eos_token, "qwen3").unwrap();
    let prompt = template.render_user("Which value?").unwrap();
    assert!(
        prompt.ends_with("<|im_start|>assistant\n<think>\n\n</think>\n\n"),
        "{prompt:?}"
    );
    assert_eq!(benchmark_variables()["enable_thinking"], false);
}
