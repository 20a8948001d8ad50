//! The observer's data as the paper's `load_full_data` builds it: each row of the target's
//! Task-2 frame whose `generation_prompt` parses with Python's strict `json.loads` after the
//! authors' fence cleaning (rows that do not are dropped, not repaired), with its action,
//! feature attributions and explanation rendered as Python's f-strings render them.

use serde_json::{Map, Value};

use crate::via::Polarity;

/// One row of the target's Task-2 frame: a VIA row and whether the target chose its action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetRow {
    /// 0-based row of the VIA CSV.
    pub via_index: usize,
    pub country: usize,
    pub topic: usize,
    pub value: usize,
    pub polarity: Polarity,
    pub model_choice: bool,
}

/// A row the observer can see: the texts of its prompts, as the paper's f-strings give them.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedRow {
    pub target: TargetRow,
    /// `str(response['Human Action'])`.
    pub action: String,
    /// `str(response['Feature Attributions'])` — a list's Python repr.
    pub attributions: String,
    /// `str(response['Natural Language Explanation'])`.
    pub explanation: String,
}

/// The authors' two tries: the text between ```` ```json ```` and the next fence (or the end),
/// then the text between the first two fences (or the end), then — without fences — the whole
/// text; each parsed strictly, as `json.loads` does.
pub fn strict_generation(text: &str) -> Option<Map<String, Value>> {
    let parse = |s: &str| serde_json::from_str::<Value>(s).ok();
    let parsed = if text.contains("```") {
        let after_first = |separator: &str| {
            let mut pieces = text.split(separator);
            pieces.next();
            pieces
                .next()
                .map(|rest| rest.split("```").next().unwrap_or(""))
        };
        after_first("```json")
            .and_then(parse)
            .or_else(|| after_first("```").and_then(parse))
    } else {
        parse(text)
    };
    match parsed {
        Some(Value::Object(map)) => Some(map),
        _ => None,
    }
}

/// Why a parsed generation cannot be observed: the paper's code would stop with a KeyError.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingField(pub &'static str);

/// The observed texts of one target row, or `Ok(None)` when its generation does not parse.
pub fn observe(row: TargetRow, generation_text: &str) -> Result<Option<ObservedRow>, MissingField> {
    let Some(generation) = strict_generation(generation_text) else {
        return Ok(None);
    };
    let field = |name: &'static str| {
        generation
            .get(name)
            .map(python_str)
            .ok_or(MissingField(name))
    };
    Ok(Some(ObservedRow {
        target: row,
        action: field("Human Action")?,
        attributions: field("Feature Attributions")?,
        explanation: field("Natural Language Explanation")?,
    }))
}

/// Python's `str()` of a value `json.loads` returned.
pub fn python_str(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => python_repr(other),
    }
}

/// Python's `repr()` of a value `json.loads` returned.
pub fn python_repr(value: &Value) -> String {
    match value {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => match n.as_f64() {
            Some(x) if !(n.is_i64() || n.is_u64()) => python_float_repr(x),
            _ => n.to_string(),
        },
        Value::String(s) => python_string_repr(s),
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(python_repr).collect();
            format!("[{}]", inner.join(", "))
        }
        Value::Object(map) => {
            let inner: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}: {}", python_string_repr(k), python_repr(v)))
                .collect();
            format!("{{{}}}", inner.join(", "))
        }
    }
}

/// `repr(float)`: the shortest digits that round-trip, in positional notation for decimal
/// exponents −4 to 15 and scientific (`1e-05`, `1.5e+16`) outside.
fn python_float_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.into();
    }
    let scientific = format!("{x:e}");
    let (mantissa, exponent) = scientific.split_once('e').expect("{:e} has an exponent");
    let exponent: i32 = exponent.parse().expect("an integer exponent");
    if (-4..16).contains(&exponent) {
        let plain = format!("{x}");
        if plain.contains('.') {
            plain
        } else {
            format!("{plain}.0")
        }
    } else {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exponent.abs())
    }
}

/// `repr(str)`: single quotes unless the text has a single quote and no double quote;
/// backslashes, the quote, `\t \n \r` and non-printable characters escaped.
pub fn python_string_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if !is_printable(c) => {
                let code = c as u32;
                match code {
                    0..=0xff => out.push_str(&format!("\\x{code:02x}")),
                    0x100..=0xffff => out.push_str(&format!("\\u{code:04x}")),
                    _ => out.push_str(&format!("\\U{code:08x}")),
                }
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Python's `str.isprintable()` for one character: not a control, format, separator (other
/// than the space), surrogate or private-use character. Covers the characters of those classes
/// that text carries in practice; unassigned code points count as printable here.
fn is_printable(c: char) -> bool {
    let code = c as u32;
    let non_printable = matches!(code,
        0x00..=0x1f | 0x7f..=0xa0 | 0xad
        | 0x600..=0x605 | 0x61c | 0x6dd | 0x70f | 0x890..=0x891 | 0x8e2 | 0x1680 | 0x180e
        | 0x2000..=0x200f | 0x2028..=0x202f | 0x205f..=0x2064 | 0x2066..=0x206f | 0x3000
        | 0xd800..=0xf8ff | 0xfeff | 0xfff9..=0xfffb | 0x110bd | 0x110cd | 0x13430..=0x1343f
        | 0x1bca0..=0x1bca3 | 0x1d173..=0x1d17a | 0xe0001 | 0xe0020..=0xe007f
        | 0xf0000..=0x10ffff);
    !non_printable
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn generations_parse_like_the_authors_code() {
        let plain = "{\"Human Action\": \"a\"}";
        assert!(strict_generation(plain).is_some());
        let fenced = "```json\n{\"Human Action\": \"a\"}\n```";
        assert!(strict_generation(fenced).is_some());
        let unclosed = "```json\n{\"Human Action\": \"a\"}";
        assert!(strict_generation(unclosed).is_some());
        let bare_fence = "```\n{\"Human Action\": \"a\"}\n```";
        assert!(strict_generation(bare_fence).is_some());
        // json.loads is strict: single quotes and trailing text are refused.
        assert!(strict_generation("{'Human Action': 'a'}").is_none());
        assert!(strict_generation("{\"a\": 1} and more").is_none());
        assert!(strict_generation("Sure! {\"a\": 1}").is_none());
        assert!(strict_generation("[1, 2]").is_none());
    }

    #[test]
    fn values_print_as_python_prints_them() {
        let attributions = json!([
            "it's",
            "say \"hi\"",
            "both ' and \"",
            "back\\slash",
            "tab\t"
        ]);
        assert_eq!(
            python_str(&attributions),
            r#"["it's", 'say "hi"', 'both \' and "', 'back\\slash', 'tab\t']"#
        );
        assert_eq!(python_str(&json!("plain ’ text")), "plain ’ text");
        assert_eq!(python_repr(&json!("nbsp\u{a0}")), "'nbsp\\xa0'");
        assert_eq!(python_repr(&json!("\u{2028}")), "'\\u2028'");
        assert_eq!(
            python_repr(&json!({"a": [1, 2.5, true, null]})),
            "{'a': [1, 2.5, True, None]}"
        );
        assert_eq!(python_repr(&json!(1e-5)), "1e-05");
        assert_eq!(python_repr(&json!(1.5e16)), "1.5e+16");
        assert_eq!(python_repr(&json!(100.0)), "100.0");
    }
}
