//! A model's chat template, rendered as transformers' `apply_chat_template(messages,
//! add_generation_prompt=True)` does: Jinja with `trim_blocks` and `lstrip_blocks`, Python
//! string methods, `raise_exception`, and the model's BOS/EOS tokens as variables.

use anyhow::{anyhow, Result};
use minijinja::syntax::SyntaxConfig;
use minijinja::{context, Environment, Error, ErrorKind};

use crate::model::checkpoint::Checkpoint;

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

    /// `content` as the single user turn, followed by the assistant's generation prompt.
    pub fn render_user(&self, content: &str) -> Result<String> {
        let template = self.env.get_template("chat")?;
        template
            .render(context! {
                messages => vec![context! { role => "user", content => content }],
                add_generation_prompt => true,
                bos_token => self.bos_token.as_str(),
                eos_token => self.eos_token.as_str(),
            })
            .map_err(|e| anyhow!("the chat template fails to render: {e}"))
    }
}
