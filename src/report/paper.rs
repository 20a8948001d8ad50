//! The paper's published alignment rates (Table 3 per country, Table 13 per topic), shown next
//! to a model's own numbers when the model is one of the paper's.

use crate::via::vocabulary::{COUNTRIES, TOPICS};

/// One model's published row(s).
pub struct PaperModel {
    pub name: &'static str,
    /// Lower-case substrings of file or model names that identify the model.
    pub aliases: &'static [&'static str],
    /// Table 3, in `COUNTRIES` order.
    pub by_country: Option<[f64; 12]>,
    /// Table 13, in `TOPICS` order.
    pub by_topic: Option<[f64; 11]>,
    /// Table 13 "Sum", else the mean of the Table 3 row.
    pub overall: f64,
}

// Table 3 prints US, CA, GER, UK, FR, AUS, IND, PAK, PHIL, NRA, EG, UG; the arrays below are
// reordered to COUNTRIES (US, IND, PAK, NRA, PHIL, UK, GER, UG, CA, EG, FR, AUS).
pub const PAPER_MODELS: &[PaperModel] = &[
    PaperModel {
        name: "GPT-4o-mini",
        aliases: &["gpt-4o-mini", "gpt4o-mini"],
        by_country: Some([
            0.67, 0.49, 0.54, 0.54, 0.47, 0.65, 0.56, 0.51, 0.59, 0.57, 0.57, 0.62,
        ]),
        by_topic: Some([
            0.594, 0.518, 0.548, 0.584, 0.569, 0.519, 0.541, 0.544, 0.644, 0.495, 0.652,
        ]),
        overall: 0.564,
    },
    PaperModel {
        name: "GPT-3.5-turbo",
        aliases: &["gpt-3.5-turbo", "gpt-35-turbo", "gpt3.5", "chatgpt"],
        by_country: Some([
            0.17, 0.18, 0.17, 0.14, 0.16, 0.20, 0.18, 0.21, 0.19, 0.18, 0.20, 0.17,
        ]),
        by_topic: Some([
            0.115, 0.166, 0.096, 0.162, 0.242, 0.165, 0.217, 0.169, 0.201, 0.244, 0.190,
        ]),
        overall: 0.179,
    },
    PaperModel {
        name: "Llama-3.3-70B",
        aliases: &["llama-3.3-70b", "llama3.3", "llama-3.3"],
        by_country: Some([
            0.51, 0.38, 0.39, 0.38, 0.39, 0.44, 0.49, 0.30, 0.49, 0.42, 0.52, 0.51,
        ]),
        by_topic: Some([
            0.388, 0.474, 0.439, 0.449, 0.398, 0.321, 0.414, 0.345, 0.494, 0.500, 0.551,
        ]),
        overall: 0.434,
    },
    PaperModel {
        name: "Gemma-2-9b",
        aliases: &["gemma-2-9b", "gemma2"],
        by_country: Some([
            0.46, 0.46, 0.46, 0.46, 0.37, 0.51, 0.43, 0.46, 0.50, 0.45, 0.45, 0.52,
        ]),
        by_topic: Some([
            0.340, 0.413, 0.490, 0.499, 0.460, 0.525, 0.431, 0.422, 0.562, 0.484, 0.447,
        ]),
        overall: 0.461,
    },
    PaperModel {
        name: "Deepseek-r1",
        aliases: &["deepseek"],
        by_country: Some([
            0.59, 0.41, 0.46, 0.42, 0.52, 0.52, 0.52, 0.49, 0.51, 0.58, 0.51, 0.56,
        ]),
        by_topic: Some([
            0.500, 0.543, 0.493, 0.519, 0.610, 0.381, 0.499, 0.369, 0.547, 0.504, 0.609,
        ]),
        overall: 0.506,
    },
    PaperModel {
        name: "Claude-sonnet-4",
        aliases: &["claude-sonnet-4", "claude"],
        by_country: Some([
            0.46, 0.40, 0.32, 0.36, 0.31, 0.47, 0.50, 0.37, 0.40, 0.41, 0.50, 0.41,
        ]),
        by_topic: None,
        overall: 0.409,
    },
    PaperModel {
        name: "GPT-4o",
        aliases: &["openai-gpt-4o", "gpt-4o"],
        by_country: Some([
            0.53, 0.49, 0.47, 0.50, 0.40, 0.51, 0.53, 0.44, 0.54, 0.44, 0.53, 0.53,
        ]),
        by_topic: None,
        overall: 0.493,
    },
    PaperModel {
        name: "Qwen",
        aliases: &["qwen-qwq", "qwq"],
        by_country: None,
        by_topic: Some([
            0.365, 0.468, 0.299, 0.395, 0.406, 0.373, 0.316, 0.273, 0.373, 0.386, 0.484,
        ]),
        overall: 0.376,
    },
];

/// The paper model a name refers to (most specific alias first: "gpt-4o-mini" before "gpt-4o").
pub fn find(name: &str) -> Option<&'static PaperModel> {
    let name = name.to_lowercase();
    let mut best: Option<(&PaperModel, usize)> = None;
    for m in PAPER_MODELS {
        for alias in m.aliases {
            if name.contains(alias) && best.is_none_or(|(_, len)| alias.len() > len) {
                best = Some((m, alias.len()));
            }
        }
    }
    best.map(|(m, _)| m)
}

const _: () = assert!(COUNTRIES.len() == 12 && TOPICS.len() == 11);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_find_their_paper_rows() {
        assert_eq!(find("gpt-3.5-turbo_t1.csv").unwrap().name, "GPT-3.5-turbo");
        assert_eq!(find("gpt-4o-mini_t1.csv").unwrap().name, "GPT-4o-mini");
        assert_eq!(find("openai-gpt-4o_t1.csv").unwrap().name, "GPT-4o");
        assert!(find("smollm2-135m").is_none());
    }

    #[test]
    fn table_3_rows_average_to_the_printed_means() {
        for m in PAPER_MODELS {
            if let Some(row) = m.by_country {
                let mean = row.iter().sum::<f64>() / 12.0;
                assert!((mean - m.overall).abs() < 0.006, "{}: {mean}", m.name);
            }
        }
    }
}
