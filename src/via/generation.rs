//! Lenient parsing of a VIA row's `generation_prompt` (GPT-4o's raw answer) into its three
//! fields. The authors cut the text from the first `{` to the last `}` and ran `json_repair`;
//! this parser takes the same cut, tries strict JSON, and otherwise splits the text at the
//! three known keys — which handles ```` ```json ```` fences, Python single-quoted dicts with
//! unescaped apostrophes, and trailing prose. A text without braces (a refusal) does not parse.

use serde_json::Value;

/// The action GPT-4o generated for one (country, topic, value, polarity).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    pub human_action: String,
    pub feature_attributions: Vec<String>,
    pub explanation: String,
}

const HUMAN_ACTION: &str = "Human Action";
const FEATURE_ATTRIBUTIONS: &str = "Feature Attributions";
const EXPLANATION: &str = "Natural Language Explanation";
const KEYS: [&str; 3] = [HUMAN_ACTION, FEATURE_ATTRIBUTIONS, EXPLANATION];

pub fn parse_generation(text: &str) -> Option<Generation> {
    let start = text.find('{')?;
    let end = text.rfind('}')?;
    if end < start {
        return None;
    }
    let body = &text[start..=end];
    strict_json(body).or_else(|| split_at_keys(body))
}

fn strict_json(body: &str) -> Option<Generation> {
    let value: Value = serde_json::from_str(body).ok()?;
    let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_string);
    let attributions = match value.get(FEATURE_ATTRIBUTIONS)? {
        Value::Array(items) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect(),
        Value::String(s) => vec![s.clone()],
        _ => return None,
    };
    Some(Generation {
        human_action: text(HUMAN_ACTION)?,
        feature_attributions: attributions,
        explanation: text(EXPLANATION)?,
    })
}

/// Finds each key as `"Key":` or `'Key':` and takes the text up to the next key (or the
/// closing brace) as its value.
fn split_at_keys(body: &str) -> Option<Generation> {
    let mut found: Vec<(usize, usize, &str)> = Vec::new();
    for key in KEYS {
        let mut located = None;
        for quote in ['"', '\''] {
            let pattern = format!("{quote}{key}{quote}");
            let mut from = 0;
            while let Some(pos) = body[from..].find(&pattern) {
                let key_start = from + pos;
                let after = key_start + pattern.len();
                let rest = &body[after..];
                let trimmed = rest.trim_start();
                if let Some(value) = trimmed.strip_prefix(':') {
                    let value_start = body.len() - value.len();
                    located = Some((key_start, value_start, key));
                    break;
                }
                from = after;
            }
            if located.is_some() {
                break;
            }
        }
        found.push(located?);
    }
    found.sort_by_key(|(start, _, _)| *start);
    let closing = body.len() - 1;
    let mut fields = std::collections::HashMap::new();
    for (i, (_, value_start, key)) in found.iter().enumerate() {
        let value_end = found.get(i + 1).map_or(closing, |next| next.0);
        fields.insert(*key, &body[*value_start..value_end]);
    }
    Some(Generation {
        human_action: clean_string(fields[HUMAN_ACTION]),
        feature_attributions: clean_list(fields[FEATURE_ATTRIBUTIONS]),
        explanation: clean_string(fields[EXPLANATION]),
    })
}

/// `  'text',\n` → `text`.
fn clean_string(raw: &str) -> String {
    let s = raw.trim().trim_end_matches(',').trim();
    unquote(s)
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    let inner = ['"', '\'']
        .iter()
        .find_map(|&q| s.strip_prefix(q).and_then(|x| x.strip_suffix(q)))
        .unwrap_or(s);
    inner
        .replace("\\'", "'")
        .replace("\\\"", "\"")
        .replace("\\n", "\n")
}

/// `['a', "b's", 'c']` → `[a, b's, c]`.
fn clean_list(raw: &str) -> Vec<String> {
    let s = raw.trim().trim_end_matches(',').trim();
    let s = s.strip_prefix('[').unwrap_or(s);
    let s = s.strip_suffix(']').unwrap_or(s);
    let mut items = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'');
        let (item, next) = match quote {
            Some(q) => {
                // The item ends at a closing quote followed by a comma or the end of the list.
                let body = &rest[1..];
                let mut end = None;
                for (i, c) in body.char_indices() {
                    if c == q
                        && (body[i + 1..].trim_start().starts_with(',')
                            || body[i + 1..].trim().is_empty())
                    {
                        end = Some(i);
                        break;
                    }
                }
                match end {
                    Some(i) => (&body[..i], body[i + 1..].trim_start()),
                    None => (body, ""),
                }
            }
            None => match rest.find(',') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, ""),
            },
        };
        let item = item.trim();
        if !item.is_empty() {
            items.push(item.replace("\\'", "'").replace("\\\"", "\""));
        }
        rest = next.strip_prefix(',').unwrap_or(next).trim_start();
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_json() {
        let g = parse_generation(
            "{\"Human Action\": \"I vote.\", \"Feature Attributions\": [\"vote\"], \"Natural Language Explanation\": \"Because.\"}",
        )
        .unwrap();
        assert_eq!(g.human_action, "I vote.");
        assert_eq!(g.feature_attributions, ["vote"]);
        assert_eq!(g.explanation, "Because.");
    }

    #[test]
    fn fenced_json_with_trailing_prose() {
        let text = "```json\n{\n  \"Human Action\": \"I recycle.\",\n  \"Feature Attributions\": [\"recycle\"],\n  \"Natural Language Explanation\": \"It helps.\"\n}\n```\nHope this helps!";
        let g = parse_generation(text).unwrap();
        assert_eq!(g.human_action, "I recycle.");
    }

    #[test]
    fn python_single_quotes_with_apostrophes_inside() {
        let text = "{\n  'Human Action': 'I walk, even when it's less comfortable.',\n  'Feature Attributions': ['walk', 'even when it\\'s less comfortable'],\n  'Natural Language Explanation': 'It shows Germany's care.'\n}";
        let g = parse_generation(text).unwrap();
        assert_eq!(g.human_action, "I walk, even when it's less comfortable.");
        assert_eq!(
            g.feature_attributions,
            ["walk", "even when it's less comfortable"]
        );
        assert_eq!(g.explanation, "It shows Germany's care.");
    }

    #[test]
    fn refusals_do_not_parse() {
        assert_eq!(
            parse_generation("I'm sorry, but I can't assist with that request."),
            None
        );
        assert_eq!(parse_generation("} nothing {"), None);
    }
}
