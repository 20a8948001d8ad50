//! A model's chat template, rendered as transformers' `apply_chat_template(messages,
//! add_generation_prompt=True)` does: Jinja with `trim_blocks` and `lstrip_blocks`, Python
//! string methods, `raise_exception`, `strftime_now`, and the model's BOS/EOS tokens as
//! variables. The benchmark's prompts pass two more, so that a prompt is the same whatever day it
//! is rendered and is answered directly: `date_string` (the Llama 3 templates' own fallback
//! date, which they otherwise replace by today's) and `enable_thinking = false` (Qwen3's
//! switch, which then closes an empty thinking block before the answer).

use anyhow::{anyhow, Result};
use minijinja::syntax::SyntaxConfig;
use minijinja::value::Serde;
use minijinja::{Environment, Error, ErrorKind};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value as Json};

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// The variables the benchmark's prompts are rendered with (see the module's doc).
pub fn benchmark_variables() -> Map<String, Json> {
    match json!({"date_string": "26 Jul 2024", "enable_thinking": false}) {
        Json::Object(map) => map,
        _ => unreachable!("an object literal"),
    }
}

use crate::model::formats::checkpoint::Checkpoint;

pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

impl ChatTemplate {
    /// Compiles `source`; a template that does not compile is an error naming `origin`.
    pub fn new(source: &str, bos_token: &str, eos_token: &str, origin: &str) -> Result<Self> {
        let mut env = Environment::new();
        env.set_syntax(
            SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()
                .map_err(|e| anyhow!("chat template syntax: {e}"))?,
        );
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |message: String| -> Result<String, Error> {
                Err(Error::new(ErrorKind::InvalidOperation, message))
            },
        );
        // transformers gives templates Python's strftime of the current time.
        env.add_function("strftime_now", |format: String| -> Result<String, Error> {
            Ok(chrono::Local::now().format(&format).to_string())
        });
        env.add_template_owned("chat", source.to_string())
            .map_err(|e| anyhow!("{origin}: the chat template does not compile: {e}"))?;
        Ok(Self {
            env,
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
        })
    }

    /// The template a checkpoint carries (GGUF `tokenizer.chat_template`, or `chat_template` of
    /// a safetensors folder's `tokenizer_config.json`), if any, with its BOS and EOS token texts.
    pub fn from_checkpoint(checkpoint: &Checkpoint) -> Result<Option<Self>> {
        if !checkpoint.has("tokenizer.chat_template") {
            return Ok(None);
        }
        Ok(Some(Self::new(
            &checkpoint.string("tokenizer.chat_template")?,
            &checkpoint.special_token_text("bos")?,
            &checkpoint.special_token_text("eos")?,
            &checkpoint.origin,
        )?))
    }

    /// `content` as the single user turn, followed by the assistant's generation prompt, with
    /// the benchmark's variables.
    pub fn render_user(&self, content: &str) -> Result<String> {
        let user = ChatMessage {
            role: "user".into(),
            content: content.into(),
        };
        self.render(&[user], true, &benchmark_variables())
    }

    /// A conversation, with the assistant's generation prompt when asked, and `variables`
    /// (e.g. `enable_thinking`) beside `messages`, `bos_token` and `eos_token`.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        variables: &Map<String, Json>,
    ) -> Result<String> {
        let mut context = variables.clone();
        context.insert("messages".into(), json!(messages));
        context.insert("add_generation_prompt".into(), json!(add_generation_prompt));
        context.insert("bos_token".into(), json!(self.bos_token));
        context.insert("eos_token".into(), json!(self.eos_token));
        let template = self.env.get_template("chat")?;
        template
            .render(Serde(&context))
            .map_err(|e| anyhow!("the chat template fails to render: {e}"))
    }
}
