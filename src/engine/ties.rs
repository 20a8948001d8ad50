//! Near ties scored again: with `--dtype quantized-tiebreak` the requests are scored with 8-bit
//! activations, and the choices of every question whose two most likely continuations lie
//! within [`NEAR_TIE_NATS`] are scored again with about 16-bit activations. A question is what
//! lm-evaluation-harness makes of a multiple-choice document: requests with the same context,
//! one per choice.
//!
//! Why 0.25 nats: on the shared workloads (448 Task-1 and 800 Task-2 questions of SmolLM2's
//! prompts) 8-bit activations changed a question's most likely choice against f32 only where
//! its best two lay within 0.07 nats (Qwen2.5-Coder-0.5B, 10 questions), 0.34 (gemma-3-270m,
//! 11 questions, all but one within 0.2) or never (SmolLM2-135M); a recheck below 0.25 nats
//! covers 0–16 % of the questions.

use std::collections::HashMap;

use super::types::Request;

/// Questions whose best two choices lie closer than this (in nats, log-probabilities of the
/// whole continuation) are scored again with finer activations.
pub const NEAR_TIE_NATS: f64 = 0.25;

/// The requests (indices, ascending) of every question whose two most likely distinct
/// continuations have log-probabilities (`logprobs[i]` for `requests[i]`) within `margin`.
/// Requests with an empty context, and a context that only one request has, are no question.
pub fn near_tie_requests(requests: &[Request], logprobs: &[f64], margin: f64) -> Vec<usize> {
    let mut questions: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, request) in requests.iter().enumerate() {
        if !request.context.is_empty() {
            questions.entry(&request.context).or_default().push(i);
        }
    }
    let mut near: Vec<usize> = questions
        .into_values()
        .filter(|members| {
            let Some(&best) = members
                .iter()
                .max_by(|&&a, &&b| logprobs[a].total_cmp(&logprobs[b]))
            else {
                return false;
            };
            // The runner-up among the other continuations (a repeated request is no rival).
            let second = members
                .iter()
                .filter(|&&i| requests[i].continuation != requests[best].continuation)
                .map(|&i| logprobs[i])
                .max_by(f64::total_cmp);
            second.is_some_and(|second| logprobs[best] - second < margin)
        })
        .flatten()
        .collect();
    near.sort_unstable();
    near
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(id: &str, context: &str, continuation: &str) -> Request {
        Request {
            id: id.into(),
            context: context.into(),
            continuation: continuation.into(),
        }
    }

    #[test]
    fn questions_are_requests_sharing_a_context_and_near_ties_are_within_the_margin() {
        let requests = [
            request("a1", "Q: a?", " yes"),
            request("b1", "Q: b?", " yes"),
            request("a2", "Q: a?", " no"),
            request("b2", "Q: b?", " no"),
            request("c1", "Q: c?", " yes"), // alone: no question
            request("d1", "", " yes"),      // no context: no question
            request("d2", "", " no"),
            request("e1", "Q: e?", " yes"), // a repeated continuation is no rival
            request("e2", "Q: e?", " yes"),
            request("e3", "Q: e?", " no"),
            request("f1", "Q: f?", " A"), // three choices, the best two close
            request("f2", "Q: f?", " B"),
            request("f3", "Q: f?", " C"),
        ];
        let logprobs = [
            -1.0, -2.0, -1.2, -2.5, -3.0, -1.0, -1.01, -0.5, -0.5, -3.0, -4.0, -1.0, -1.1,
        ];
        assert_eq!(
            near_tie_requests(&requests, &logprobs, 0.25),
            vec![0, 2, 10, 11, 12]
        );
        // At a wider margin question b (0.5 apart) is rechecked too; e (2.5) never.
        assert_eq!(
            near_tie_requests(&requests, &logprobs, 0.6),
            vec![0, 1, 2, 3, 10, 11, 12]
        );
        assert!(near_tie_requests(&requests, &logprobs, 0.0).is_empty());
    }
}
