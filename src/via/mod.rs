//! The VIA dataset (value-informed actions): its vocabulary, the CSV loader with the lenient
//! parse of each generated action, where the data file comes from, and readers for the paper's
//! released model outputs.

pub mod dataset;
pub mod generation;
pub mod released;
pub mod setup;
pub mod vocabulary;

pub use dataset::{scenario_index, Dataset, Pair, Polarity, ViaRow, N_SCENARIOS};
use vocabulary::{COUNTRIES, TOPICS, VALUES};

pub fn country_index(name: &str) -> Option<usize> {
    COUNTRIES.iter().position(|c| *c == name.trim())
}

pub fn topic_index(name: &str) -> Option<usize> {
    TOPICS.iter().position(|t| *t == name.trim())
}

pub fn value_index(name: &str) -> Option<usize> {
    VALUES.iter().position(|v| *v == name.trim())
}
