//! The text tokenizer of a model, rebuilt from GGUF metadata so that it yields the same ids as
//! Hugging Face transformers' GGUF conversion: byte-level BPE split by the regex its
//! `tokenizer.ggml.pre` names (GPT-2's by default), control tokens (`tokenizer.ggml.token_type`
//! 3) and user-defined tokens (type 4) matched verbatim before pre-tokenization, and BOS only
//! where the file asks for it.

use anyhow::{bail, Context, Result};
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::prepend::Prepend;
use tokenizers::normalizers::replace::Replace;
use tokenizers::normalizers::{NormalizerWrapper, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use super::formats::checkpoint::Checkpoint;

const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The split regex of a byte-level vocabulary, by its `tokenizer.ggml.pre` name (as
/// transformers' `GGUF_PRE_TOKENIZER_SPLITS`); `None` means GPT-2's own regex.
fn split_regex(pre: &str) -> Option<&'static str> {
    match pre {
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "smaug-bpe" | "dbrx" => {
            Some(LLAMA3_SPLIT)
        }
        "qwen2" | "deepseek-r1-qwen" | "megrez" => Some(QWEN2_SPLIT),
        _ => None,
    }
}

/// GPT-2's printable spelling of the 256 byte values (`bytes_to_unicode`).
fn byte_alphabet() -> Vec<char> {
    let printable = |b: u32| {
        (u32::from(b'!')..=u32::from(b'~')).contains(&b)
            || (0xA1..=0xAC).contains(&b)
            || (0xAE..=0xFF).contains(&b)
    };
    let mut extra = 0;
    (0..256u32)
        .map(|b| {
            if printable(b) {
                char::from_u32(b).expect("a Latin-1 code point")
            } else {
                extra += 1;
                char::from_u32(255 + extra).expect("a code point below 512")
            }
        })
        .collect()
}

/// Turns text into token ids the way the model was trained to see it.
/// Which sentencepiece conventions a GGUF `llama` tokenizer follows.
#[derive(Debug, Clone, Copy)]
enum Sentencepiece {
    /// No space before the text; merges ranked by position (Gemma's scores do not follow them).
    Gemma,
    /// Llama 2, Mistral, Phi-3: merges ranked by score, a space before the text where the file
    /// says so.
    Llama { space_prefix: bool },
}

pub struct TextTokenizer {
    inner: Tokenizer,
    /// Prepended to every encoding when the model asks for a BOS token.
    bos: Option<u32>,
    /// Whether `inner`'s own post-processor adds the special tokens (tokenizer.json), rather
    /// than `bos` (GGUF).
    post_processor_adds_special_tokens: bool,
    /// The token lm-evaluation-harness puts before an empty context (BOS, else EOS).
    prefix_token: u32,
    vocab_size: usize,
}

impl TextTokenizer {
    pub fn from_checkpoint(checkpoint: &Checkpoint) -> Result<Self> {
        if let Some(json) = checkpoint.tokenizer_json() {
            return Self::from_tokenizer_json(checkpoint, &json);
        }
        let model = checkpoint.string("tokenizer.ggml.model")?;
        let architecture = checkpoint.string("general.architecture")?;
        match model.as_str() {
            "gpt2" => Self::byte_level_bpe(checkpoint),
            // Gemma's sentencepiece adds no space before the text; Llama 2's, Mistral's and
            // Phi-3's do (the file's add_space_prefix, true when absent).
            "llama" if architecture.starts_with("gemma") => {
                Self::sentencepiece(checkpoint, Sentencepiece::Gemma)
            }
            "llama" => Self::sentencepiece(
                checkpoint,
                Sentencepiece::Llama {
                    space_prefix: checkpoint.bool_or("tokenizer.ggml.add_space_prefix", true)?,
                },
            ),
            other => bail!(
                "{}: tokenizer model '{other}' (architecture {architecture}) is not supported yet \
                 (supported: gpt2 byte-level BPE, llama sentencepiece BPE)",
                checkpoint.origin
            ),
        }
    }

    fn byte_level_bpe(checkpoint: &Checkpoint) -> Result<Self> {
        let tokens = checkpoint.strings("tokenizer.ggml.tokens")?;
        let merges: Vec<(String, String)> = checkpoint
            .strings("tokenizer.ggml.merges")?
            .into_iter()
            .enumerate()
            .map(|(i, m)| match m.split_once(' ') {
                Some((a, b)) => Ok((a.to_string(), b.to_string())),
                None => bail!(
                    "{}: tokenizer merge #{i} '{m}' is not two tokens separated by a space",
                    checkpoint.origin
                ),
            })
            .collect::<Result<_>>()?;
        let token_types = if checkpoint.has("tokenizer.ggml.token_type") {
            checkpoint.integers("tokenizer.ggml.token_type")?
        } else {
            vec![1; tokens.len()]
        };
        // Every real token is spelled in the byte alphabet; one that is not (a literal control
        // token text) is respelled byte by byte, as transformers does.
        let alphabet = byte_alphabet();
        let in_alphabet = |t: &str| t.chars().all(|c| alphabet.contains(&c));
        let vocab: ahash::AHashMap<String, u32> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let spelled = if in_alphabet(t) {
                    t.clone()
                } else {
                    t.bytes().map(|b| alphabet[b as usize]).collect()
                };
                (spelled, i as u32)
            })
            .collect();
        let pre = if checkpoint.has("tokenizer.ggml.pre") {
            checkpoint.string("tokenizer.ggml.pre")?
        } else {
            String::new()
        };
        // Llama 3's tokenizer takes a word that is itself in the vocabulary whole, before any
        // merge (its tokenizer.json's `ignore_merges`; llama.cpp does the same for this pre).
        let ignore_merges = split_regex(&pre) == Some(LLAMA3_SPLIT);
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .ignore_merges(ignore_merges)
            .build()
            .map_err(|e| anyhow::anyhow!("{}: bad BPE vocabulary: {e}", checkpoint.origin))?;
        let mut inner = Tokenizer::new(bpe);
        match split_regex(&pre) {
            Some(regex) => {
                let split = Split::new(
                    SplitPattern::Regex(regex.to_string()),
                    SplitDelimiterBehavior::Isolated,
                    false,
                )
                .map_err(|e| anyhow::anyhow!("split regex of '{pre}': {e}"))?;
                inner.with_pre_tokenizer(Some(Sequence::new(vec![
                    PreTokenizerWrapper::Split(split),
                    PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, false)),
                ])));
            }
            None => {
                inner.with_pre_tokenizer(Some(ByteLevel::new(false, false, true)));
            }
        }
        inner.with_decoder(Some(ByteLevel::default()));
        // A "control" token outside the byte alphabet is a llama.cpp mislabel (transformers
        // skips it too).
        add_file_tokens(
            &mut inner,
            checkpoint,
            &tokens,
            &token_types,
            &in_alphabet,
            &in_alphabet,
        )?;

        Self::finish(checkpoint, inner, tokens.len())
    }

    /// BOS (where the file asks for it) and lm-eval's prefix token, around a built tokenizer.
    fn finish(checkpoint: &Checkpoint, inner: Tokenizer, vocab_size: usize) -> Result<Self> {
        let token_id = |key: &str| -> Result<Option<u32>> {
            if checkpoint.has(key) {
                Ok(Some(checkpoint.usize(key)? as u32))
            } else {
                Ok(None)
            }
        };
        let bos_id = token_id("tokenizer.ggml.bos_token_id")?;
        let eos_id = token_id("tokenizer.ggml.eos_token_id")?;
        let add_bos = checkpoint.bool_or("tokenizer.ggml.add_bos_token", false)?;
        let bos = if add_bos { bos_id } else { None };
        let prefix_token = bos_id.or(eos_id).with_context(|| {
            format!(
                "{}: the tokenizer names neither a BOS nor an EOS token",
                checkpoint.origin
            )
        })?;
        Ok(Self {
            inner,
            bos,
            post_processor_adds_special_tokens: false,
            prefix_token,
            vocab_size,
        })
    }

    /// Sentencepiece BPE (GGUF model `llama`) as transformers rebuilds it from a GGUF: spaces
    /// normalised to "▁" (with one "▁" before the text where the model adds a space prefix:
    /// Llama 2, Mistral, Phi-3; not Gemma), byte fallback for unknown characters, and — the file
    /// listing no merges — merges recovered from the vocabulary, ordered by the tokens' position
    /// in the file (Gemma's scores do not follow its merge order). Tokens of two or more spaces
    /// are stored as real spaces and respelled as "▁"s first, so that the merges built from them
    /// match.
    fn sentencepiece(checkpoint: &Checkpoint, kind: Sentencepiece) -> Result<Self> {
        let tokens = checkpoint.strings("tokenizer.ggml.tokens")?;
        let spelled: Vec<String> = tokens
            .iter()
            .map(|t| {
                if t.contains(' ') && t.trim().is_empty() {
                    "\u{2581}".repeat(t.chars().count())
                } else {
                    t.clone()
                }
            })
            .collect();
        let vocab: ahash::AHashMap<String, u32> = spelled
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        // Gemma's scores do not follow its merge order, so transformers ranks its merges by
        // position; the others' by score.
        let merges = match kind {
            Sentencepiece::Llama { .. } if checkpoint.has("tokenizer.ggml.scores") => {
                merges_by_score(&spelled, &checkpoint.f32s("tokenizer.ggml.scores")?, &vocab)
            }
            _ => merges_by_position(&spelled, &vocab),
        };
        let unk = match checkpoint.has("tokenizer.ggml.unknown_token_id") {
            true => tokens[checkpoint.usize("tokenizer.ggml.unknown_token_id")?].clone(),
            false => "<unk>".to_string(),
        };
        let bpe = BPE::builder()
            .vocab_and_merges(vocab.clone(), merges)
            .unk_token(unk)
            .fuse_unk(true)
            .byte_fallback(true)
            .build()
            .map_err(|e| anyhow::anyhow!("{}: bad BPE vocabulary: {e}", checkpoint.origin))?;
        let mut inner = Tokenizer::new(bpe);
        let spaces =
            Replace::new(" ", "\u{2581}").map_err(|e| anyhow::anyhow!("normalizer: {e}"))?;
        match matches!(kind, Sentencepiece::Llama { space_prefix: true }) {
            true => inner.with_normalizer(Some(NormalizerSequence::new(vec![
                NormalizerWrapper::Prepend(Prepend::new("\u{2581}".into())),
                NormalizerWrapper::Replace(spaces),
            ]))),
            false => inner.with_normalizer(Some(spaces)),
        }
        .map_err(|e| anyhow::anyhow!("normalizer: {e}"))?;
        let token_types = checkpoint.integers("tokenizer.ggml.token_type")?;
        let in_vocab = |t: &str| vocab.contains_key(t);
        add_file_tokens(
            &mut inner,
            checkpoint,
            &tokens,
            &token_types,
            &|_| true,
            &in_vocab,
        )?;
        Self::finish(checkpoint, inner, tokens.len())
    }

    /// Token ids of `text` with the tokenizer's default special tokens (BOS where the model adds
    /// one), as `tokenizer(text).input_ids` in transformers.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode_fast(text, self.post_processor_adds_special_tokens)
            .map_err(|e| anyhow::anyhow!("cannot tokenize text: {e}"))?;
        let mut ids = Vec::with_capacity(encoding.len() + 1);
        ids.extend(self.bos);
        ids.extend_from_slice(encoding.get_ids());
        Ok(ids)
    }

    /// Token ids of `text` without special tokens (`add_special_tokens=False`).
    pub fn encode_plain(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode_fast(text, false)
            .map_err(|e| anyhow::anyhow!("cannot tokenize text: {e}"))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// A Hugging Face `tokenizer.json` (its post-processor adds BOS where the model wants one,
    /// as `tokenizer(text)` does in transformers), with BOS/EOS named by the checkpoint's
    /// tokenizer_config.json.
    fn from_tokenizer_json(checkpoint: &Checkpoint, path: &std::path::Path) -> Result<Self> {
        let inner = Tokenizer::from_file(path)
            .map_err(|e| anyhow::anyhow!("{}: cannot load the tokenizer: {e}", path.display()))?;
        let id_of = |which: &str| -> Result<Option<u32>> {
            let text = checkpoint.special_token_text(which)?;
            Ok(inner.token_to_id(&text).filter(|_| !text.is_empty()))
        };
        let prefix_token = id_of("bos")?.or(id_of("eos")?).with_context(|| {
            format!(
                "{}: tokenizer_config.json names neither a BOS nor an EOS token of the vocabulary",
                checkpoint.origin
            )
        })?;
        let vocab_size = inner.get_vocab_size(true);
        Ok(Self {
            inner,
            bos: None,
            post_processor_adds_special_tokens: true,
            prefix_token,
            vocab_size,
        })
    }

    /// Writes the tokenizer as a Hugging Face `tokenizer.json` that encodes as this one does:
    /// BOS, where this tokenizer prepends it, becomes the file's post-processor.
    pub fn save_json(&self, path: &std::path::Path) -> Result<()> {
        let mut tokenizer = self.inner.clone();
        if let Some(bos) = self.bos {
            let text = tokenizer
                .id_to_token(bos)
                .with_context(|| format!("BOS id {bos} is outside the vocabulary"))?;
            let template = tokenizers::processors::template::TemplateProcessing::builder()
                .try_single(format!("{text} $A"))
                .map_err(|e| anyhow::anyhow!("BOS template: {e}"))?
                .special_tokens(vec![(text.clone(), bos)])
                .build()
                .map_err(|e| anyhow::anyhow!("BOS template: {e}"))?;
            tokenizer.with_post_processor(Some(template));
        }
        tokenizer
            .save(path, false)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
    }

    pub fn prefix_token(&self) -> u32 {
        self.prefix_token
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, false)
            .map_err(|e| anyhow::anyhow!("cannot decode tokens: {e}"))
    }
}

/// The file's control tokens (type 3) as special tokens and its user-defined tokens (type 4) as
/// plain added ones, both matched verbatim before normalisation — those the filters keep.
fn add_file_tokens(
    inner: &mut Tokenizer,
    checkpoint: &Checkpoint,
    tokens: &[String],
    token_types: &[i64],
    keep_control: &dyn Fn(&str) -> bool,
    keep_user_defined: &dyn Fn(&str) -> bool,
) -> Result<()> {
    let of_type = |wanted: i64, keep: &dyn Fn(&str) -> bool| -> Vec<String> {
        token_types
            .iter()
            .zip(tokens)
            .filter(|(ty, t)| **ty == wanted && keep(t))
            .map(|(_, t)| t.clone())
            .collect()
    };
    let special: Vec<AddedToken> = of_type(TOKEN_TYPE_CONTROL, keep_control)
        .into_iter()
        .map(|t| AddedToken::from(t, true))
        .collect();
    inner
        .add_special_tokens(special)
        .map_err(|e| anyhow::anyhow!("{}: bad special tokens: {e}", checkpoint.origin))?;
    let user_defined: Vec<AddedToken> = of_type(TOKEN_TYPE_USER_DEFINED, keep_user_defined)
        .into_iter()
        .map(|t| AddedToken::from(t, false).normalized(false))
        .collect();
    inner
        .add_tokens(user_defined)
        .map_err(|e| anyhow::anyhow!("{}: bad added tokens: {e}", checkpoint.origin))?;
    Ok(())
}

/// transformers' `generate_merges` with the file's scores (Llama 2, Mistral, Phi-3): per token in
/// file order, every split into two tokens of the vocabulary, by descending (left id, right
/// id); then all of them stably by the merged token's score, highest first.
fn merges_by_score(
    tokens: &[String],
    scores: &[f32],
    vocab: &ahash::AHashMap<String, u32>,
) -> Vec<(String, String)> {
    let mut merges: Vec<(String, String, f32)> = Vec::new();
    for (token, &score) in tokens.iter().zip(scores) {
        let bounds: Vec<usize> = token.char_indices().map(|(i, _)| i).skip(1).collect();
        let mut local: Vec<(u32, u32, &str, &str)> = bounds
            .iter()
            .filter_map(|&split| {
                let (left, right) = token.split_at(split);
                Some((*vocab.get(left)?, *vocab.get(right)?, left, right))
            })
            .collect();
        local.sort_by_key(|&(l, r, _, _)| std::cmp::Reverse((l, r)));
        merges.extend(
            local
                .into_iter()
                .map(|(_, _, l, r)| (l.to_string(), r.to_string(), score)),
        );
    }
    merges.sort_by(|a, b| b.2.total_cmp(&a.2));
    merges.into_iter().map(|(l, r, _)| (l, r)).collect()
}

/// transformers' `generate_merges` with tokens ranked by their position: for each token in
/// file order, every split into two tokens of the vocabulary, longer left part first.
fn merges_by_position(
    tokens: &[String],
    vocab: &ahash::AHashMap<String, u32>,
) -> Vec<(String, String)> {
    let mut merges = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        // A spelling that occurs twice (after respelling) ranks, like its id, at its last place.
        if vocab.get(token) != Some(&(i as u32)) {
            continue;
        }
        let bounds: Vec<usize> = token.char_indices().map(|(i, _)| i).skip(1).collect();
        for &split in bounds.iter().rev() {
            let (left, right) = token.split_at(split);
            if vocab.contains_key(left) && vocab.contains_key(right) {
                merges.push((left.to_string(), right.to_string()));
            }
        }
    }
    merges
}
