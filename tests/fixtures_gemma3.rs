//! gemma-3-270m against `../shared/fixtures/gemma3-270m/`: so far its tokenizer (sentencepiece
//! BPE rebuilt from the GGUF, BOS added) — the gemma3 network itself is not implemented yet.

mod common;

use common::{fixtures, registry_model_path};
use valuelens::engine::tokenize_with;
use valuelens::model::gguf::GgufFile;
use valuelens::model::tokenizer::TextTokenizer;

#[test]
fn token_ids_match_the_reference_for_every_request() {
    let gguf = GgufFile::open(&registry_model_path("gemma3-270m")).unwrap();
    let tokenizer = TextTokenizer::from_gguf(&gguf).unwrap();
    let (requests, references) = fixtures("gemma3-270m");
    let mut mismatches = Vec::new();
    for (request, reference) in requests.iter().zip(&references) {
        let tokenized = tokenize_with(&tokenizer, request).unwrap();
        if tokenized.context() != reference.context_tokens.as_slice()
            || tokenized.continuation() != reference.continuation_tokens.as_slice()
        {
            let first_difference = tokenized
                .context()
                .iter()
                .zip(&reference.context_tokens)
                .position(|(a, b)| a != b);
            mismatches.push(format!(
                "{} (first difference at {first_difference:?})",
                request.id
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "token ids differ for {} of {}: {:?}",
        mismatches.len(),
        requests.len(),
        &mismatches[..mismatches.len().min(5)]
    );
}
