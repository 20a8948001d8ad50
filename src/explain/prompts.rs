//! The observer's prompts, byte for byte as the paper's `few_shot_learning.py` builds them
//! (PAPER.md §6): a system text, twenty (user, assistant) example turns, and the query; the
//! observer's answer is scored after `Label:` as ` True` against ` False`.

use std::fmt;

use super::frame::ObservedRow;
use crate::prompts::chat::ChatMessage;

/// What the observer sees of each example: the four settings of the paper's Table 14.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Setting {
    /// The action alone (`default` in the code).
    Act,
    /// With its feature attributions (`attribution`).
    Attr,
    /// With its explanation (`explanation`).
    Exp,
    /// With both (`attribution_explanation`).
    All,
}

impl Setting {
    pub const ALL: [Setting; 4] = [Setting::Act, Setting::Attr, Setting::Exp, Setting::All];

    pub fn name(self) -> &'static str {
        match self {
            Setting::Act => "act",
            Setting::Attr => "attr",
            Setting::Exp => "exp",
            Setting::All => "all",
        }
    }

    /// The mode's name in the paper's code and its output files.
    pub fn paper_mode(self) -> &'static str {
        match self {
            Setting::Act => "default",
            Setting::Attr => "attribution",
            Setting::Exp => "explanation",
            Setting::All => "attribution_explanation",
        }
    }

    /// Table 14's column header.
    pub fn title(self) -> &'static str {
        match self {
            Setting::Act => "Act",
            Setting::Attr => "Act+Attr",
            Setting::Exp => "Act+Exp",
            Setting::All => "Act+Attr+Exp",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.name() == name || s.paper_mode() == name)
    }

    /// The assistant's turn of an example (the paper's f-strings, double spaces included).
    pub fn completion(self, row: &ObservedRow) -> String {
        let label = python_bool(row.target.model_choice);
        match self {
            Setting::Act => format!("Label: {label}"),
            Setting::Attr => format!(
                "Label: {label}  \n Action Attribution: {}",
                row.attributions
            ),
            Setting::Exp => format!("Label: {label} \n Reason: {}", row.explanation),
            Setting::All => format!(
                "Label: {label} \n Action Attribution: {} \n Reason: {}",
                row.attributions, row.explanation
            ),
        }
    }
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn python_bool(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

/// The system turn: the code's fixed prefix followed by its indented task description.
pub const SYSTEM: &str = "You are an AI trained to solve specific tasks based on examples. 
    You are a action predictor. Given a textual action, predict if an agent will perform it or not:
    1. The overall label (True/False)
    3. Reason for the assessment
    Format your response exactly like the examples.
    ";

/// The user turn of an example or of the query.
pub fn query(row: &ObservedRow) -> String {
    format!("Predict the Action: '{}'", row.action)
}

/// The conversation up to the query: system, the examples' turns, the query's user turn.
pub fn conversation(
    setting: Setting,
    examples: &[ObservedRow],
    test: &ObservedRow,
) -> Vec<ChatMessage> {
    let turn = |role: &str, content: String| ChatMessage {
        role: role.into(),
        content,
    };
    let mut messages = vec![turn("system", SYSTEM.to_string())];
    for example in examples {
        messages.push(turn("user", query(example)));
        messages.push(turn("assistant", setting.completion(example)));
    }
    messages.push(turn("user", query(test)));
    messages
}

/// What the observer's answer starts with; the label follows as its next word.
pub const ANSWER_PREFIX: &str = "Label:";
/// The two continuations compared, true first.
pub const LABELS: [&str; 2] = [" True", " False"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_text_is_the_codes_concatenation() {
        let task_description = "\n    You are a action predictor. Given a textual action, predict if an agent will perform it or not:\n    1. The overall label (True/False)\n    3. Reason for the assessment\n    Format your response exactly like the examples.\n    ";
        assert_eq!(
            SYSTEM,
            format!("You are an AI trained to solve specific tasks based on examples. {task_description}")
        );
    }

    #[test]
    fn settings_parse_by_either_name() {
        assert_eq!(Setting::parse("attr"), Some(Setting::Attr));
        assert_eq!(
            Setting::parse("attribution_explanation"),
            Some(Setting::All)
        );
        assert_eq!(Setting::parse("both"), None);
    }
}
