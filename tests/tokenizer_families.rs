//! The tokenizers of the families valuelens runs, as their GGUF files carry them: the vocabulary
//! files llama.cpp tests its tokenizers with (`ggml-vocab-<family>.gguf`: Llama 3's byte-level
//! BPE, Qwen2/Qwen3's, Llama 2 / Mistral's and Phi-3's sentencepiece) give, on every one of
//! llama.cpp's test texts, the token ids that the families' Hugging Face tokenizers give
//! (the `.out` files, which llama.cpp generated with them). The files come from the
//! llama-cpp-python source distribution on PyPI (fetched once into the models folder, sha256
//! checked).

mod common;

use valuelens::model::formats::open::open_path;
use valuelens::model::tokenizer::TextTokenizer;

fn matches_hugging_face(family: &str) {
    let dir = common::llama_cpp_vocabs();
    let path = dir.join(format!("ggml-vocab-{family}.gguf"));
    let checkpoint = open_path(&path).unwrap();
    let tokenizer = TextTokenizer::from_checkpoint(&checkpoint).unwrap();
    let read =
        |ext: &str| std::fs::read_to_string(dir.join(format!("ggml-vocab-{family}.gguf.{ext}")));
    let inputs = read("inp").unwrap();
    let outputs = read("out").unwrap();
    let texts: Vec<&str> = inputs.split("\n__ggml_vocab_test__\n").collect();
    let expected: Vec<Vec<u32>> = outputs
        .lines()
        .map(|l| l.split_whitespace().map(|x| x.parse().unwrap()).collect())
        .collect();
    assert!(
        expected.len() >= 40,
        "{family}: {} test texts",
        expected.len()
    );
    for (text, want) in texts.iter().zip(&expected) {
        let got = tokenizer.encode_plain(text).unwrap();
        assert_eq!(&got, want, "{family}: {text:?}");
    }
}

#[test]
fn llama_3_byte_level_bpe() {
    matches_hugging_face("llama-bpe");
}

#[test]
fn qwen2_and_qwen3_byte_level_bpe() {
    matches_hugging_face("qwen2");
}

#[test]
fn llama_2_and_mistral_sentencepiece() {
    matches_hugging_face("llama-spm");
}

#[test]
fn phi_3_sentencepiece() {
    matches_hugging_face("phi-3");
}
