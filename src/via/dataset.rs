//! Loading the VIA CSV (14,784 rows, RFC-4180 quoting with multi-line fields, two unnamed
//! index columns that are ignored) into rows keyed by (country, topic, value, polarity), and
//! pairing each positive row with its negative row.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::generation::{parse_generation, Generation};
use super::vocabulary::{country_index, topic_index, value_index, COUNTRIES, TOPICS, VALUES};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Polarity {
    /// The action expresses the value.
    Positive,
    /// The action resists the value.
    Negative,
}

impl Polarity {
    pub fn as_str(self) -> &'static str {
        match self {
            Polarity::Positive => "positive",
            Polarity::Negative => "negative",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "positive" => Some(Polarity::Positive),
            "negative" => Some(Polarity::Negative),
            _ => None,
        }
    }
}

/// One generated action.
#[derive(Debug, Clone)]
pub struct ViaRow {
    /// 0-based data row of the CSV (the header is not counted).
    pub index: usize,
    pub country: usize,
    pub topic: usize,
    pub value: usize,
    pub polarity: Polarity,
    /// `None` for refusals and other answers without a JSON object.
    pub generation: Option<Generation>,
    /// The `generation_prompt` cell as written (for parsers stricter than ours).
    pub generation_text: String,
}

impl ViaRow {
    pub fn scenario(&self) -> usize {
        scenario_index(self.country, self.topic)
    }
}

/// The positive and negative action of one (country, topic, value).
#[derive(Debug, Clone)]
pub struct Pair {
    pub country: usize,
    pub topic: usize,
    pub value: usize,
    pub positive: Option<usize>,
    pub negative: Option<usize>,
}

impl Pair {
    pub fn scenario(&self) -> usize {
        scenario_index(self.country, self.topic)
    }
}

/// Scenario order of every matrix: country-major.
pub fn scenario_index(country: usize, topic: usize) -> usize {
    country * TOPICS.len() + topic
}

pub const N_SCENARIOS: usize = COUNTRIES.len() * TOPICS.len();

/// A VIA row's identity: country, topic and value (indices into the vocabulary) and polarity.
pub type RowKey = (usize, usize, usize, Polarity);

/// The key of one CSV record from its country, topic, value and polarity fields; an error names
/// `at` (file and line) and the field outside the VIA vocabulary.
pub fn parse_row_key(at: &str, [country, topic, value, polarity]: [&str; 4]) -> Result<RowKey> {
    Ok((
        country_index(country).with_context(|| format!("{at}: unknown country '{country}'"))?,
        topic_index(topic).with_context(|| format!("{at}: unknown topic '{topic}'"))?,
        value_index(value).with_context(|| format!("{at}: unknown value '{value}'"))?,
        Polarity::parse(polarity).with_context(|| {
            format!("{at}: polarity '{polarity}' is neither 'positive' nor 'negative'")
        })?,
    ))
}

pub struct Dataset {
    pub path: PathBuf,
    pub rows: Vec<ViaRow>,
    /// All (country, topic, value) triples present, in scenario-then-value order.
    pub pairs: Vec<Pair>,
}

const REQUIRED_COLUMNS: [&str; 5] = ["country", "topic", "value", "polarity", "generation_prompt"];

impl Dataset {
    pub fn load(path: &Path) -> Result<Self> {
        let mut reader = csv::ReaderBuilder::new()
            .flexible(false)
            .from_path(path)
            .with_context(|| format!("cannot open VIA data file {}", path.display()))?;
        let headers = reader
            .headers()
            .with_context(|| format!("{}: cannot read the header line", path.display()))?
            .clone();
        let column = |name: &str| headers.iter().position(|h| h == name);
        let missing: Vec<&str> = REQUIRED_COLUMNS
            .iter()
            .copied()
            .filter(|c| column(c).is_none())
            .collect();
        if !missing.is_empty() {
            bail!(
                "{}: missing column(s) {}; a VIA data file has the columns {} (the released \
                 value_action_gap_full_data_generation.csv)",
                path.display(),
                missing.join(", "),
                REQUIRED_COLUMNS.join(", ")
            );
        }
        let [c_country, c_topic, c_value, c_polarity, c_generation] =
            REQUIRED_COLUMNS.map(|c| column(c).expect("checked above"));
        let mut rows = Vec::new();
        let mut seen: HashMap<(usize, usize, usize, Polarity), usize> = HashMap::new();
        for (index, record) in reader.records().enumerate() {
            let record =
                record.map_err(|e| anyhow::anyhow!("{}: malformed CSV: {e}", path.display()))?;
            let line = record.position().map_or(0, |p| p.line());
            let field = |i: usize| record.get(i).unwrap_or_default();
            let at = || format!("{} line {line}", path.display());
            let (country, topic, value, polarity) =
                parse_row_key(&at(), [c_country, c_topic, c_value, c_polarity].map(field))?;
            if let Some(first) = seen.insert((country, topic, value, polarity), index) {
                bail!(
                    "{}: ({}, {}, {}, {}) appears twice (also data row {first})",
                    at(),
                    COUNTRIES[country],
                    TOPICS[topic],
                    VALUES[value],
                    polarity.as_str()
                );
            }
            rows.push(ViaRow {
                index,
                country,
                topic,
                value,
                polarity,
                generation: parse_generation(field(c_generation)),
                generation_text: field(c_generation).to_string(),
            });
        }
        if rows.is_empty() {
            bail!("{}: the file has no data rows", path.display());
        }
        let mut by_triple: HashMap<(usize, usize, usize), Pair> = HashMap::new();
        for row in &rows {
            let pair = by_triple
                .entry((row.country, row.topic, row.value))
                .or_insert(Pair {
                    country: row.country,
                    topic: row.topic,
                    value: row.value,
                    positive: None,
                    negative: None,
                });
            match row.polarity {
                Polarity::Positive => pair.positive = Some(row.index),
                Polarity::Negative => pair.negative = Some(row.index),
            }
        }
        let mut pairs: Vec<Pair> = by_triple.into_values().collect();
        pairs.sort_by_key(|p| (p.scenario(), p.value));
        Ok(Self {
            path: path.to_path_buf(),
            rows,
            pairs,
        })
    }

    pub fn parsed_rows(&self) -> usize {
        self.rows.iter().filter(|r| r.generation.is_some()).count()
    }

    /// Rows whose `generation_prompt` has no JSON object (refusals), for reporting.
    pub fn unparsed_rows(&self) -> impl Iterator<Item = &ViaRow> {
        self.rows.iter().filter(|r| r.generation.is_none())
    }

    /// A pair is usable when both of its actions exist and parsed.
    pub fn is_usable(&self, pair: &Pair) -> bool {
        let parsed = |i: Option<usize>| i.is_some_and(|i| self.rows[i].generation.is_some());
        parsed(pair.positive) && parsed(pair.negative)
    }

    pub fn usable_pairs(&self) -> impl Iterator<Item = &Pair> {
        self.pairs.iter().filter(|p| self.is_usable(p))
    }
}
