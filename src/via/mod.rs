//! The VIA dataset (value-informed actions): its vocabulary, the CSV loader with the lenient
//! parse of each generated action, and where the data file comes from.

pub mod dataset;
pub mod generation;
pub mod setup;
pub mod vocabulary;

pub use dataset::{scenario_index, Dataset, Pair, Polarity, ViaRow, N_SCENARIOS};
pub use vocabulary::{country_index, topic_index, value_index};
