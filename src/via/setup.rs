//! Where the VIA CSV comes from: `--data PATH` when given; else `data/` (git-ignored), filled
//! from the paper's files beside the repository (`../shared/valueactionlens/…`) where they
//! exist, otherwise downloaded from the paper's GitHub repository at a pinned commit — always
//! verified by sha256 and moved into place only once verified.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::verified;

pub const VIA_FILE: &str = "value_action_gap_full_data_generation.csv";
pub const VIA_SHA256: &str = "892e52588d9b9ffa0c3316200dec4ceec4e893793aa2a47ae6f11415e4f9209d";
const VIA_RELEASE_PATH: &str = "outputs/data_release/value_action_gap_full_data_generation.csv";
const VIA_URL: &str = "https://raw.githubusercontent.com/huashen218/value_action_gap/\
3c5e0133221499619abcc8c7fc802b31e7c4a144/outputs/data_release/value_action_gap_full_data_generation.csv";

/// `$VALUELENS_DATA_DIR`, else the `data/` folder of the source tree, else `./data`.
pub fn data_dir() -> PathBuf {
    crate::paths::project_dir("VALUELENS_DATA_DIR", "data")
}

/// The paper's released files beside the repository: `$VALUELENS_SHARED/valueactionlens`, else
/// `../shared/valueactionlens` next to the source tree.
pub fn released_files_dir() -> PathBuf {
    let shared = std::env::var_os("VALUELENS_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    shared.join("valueactionlens")
}

/// The VIA CSV to use: `explicit` as given, or the verified copy in `data/`, set up if needed.
pub fn via_csv(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = explicit {
        if !path.is_file() {
            bail!(
                "VIA data file {} does not exist; pass the released \
                 value_action_gap_full_data_generation.csv, or leave --data out to use data/",
                path.display()
            );
        }
        return Ok(path.to_path_buf());
    }
    let dir = data_dir();
    let dest = dir.join(VIA_FILE);
    if dest.is_file() && verified::matches(&dest, None, VIA_SHA256)? {
        return Ok(dest);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let staged = tempfile::Builder::new()
        .prefix(".via-")
        .suffix(".tmp")
        .tempfile_in(&dir)?;
    let local = released_files_dir().join(VIA_RELEASE_PATH);
    if local.is_file() {
        std::fs::copy(&local, staged.path())
            .with_context(|| format!("cannot copy {}", local.display()))?;
    } else {
        eprintln!("downloading the VIA dataset from {VIA_URL} …");
        let status = Command::new("curl")
            .args(["-fsSL", "--retry", "2", "-o"])
            .arg(staged.path())
            .arg(VIA_URL)
            .status()
            .context("cannot run curl to download the VIA dataset")?;
        if !status.success() {
            bail!(
                "downloading the VIA dataset failed; place {VIA_FILE} in {} or pass --data",
                dir.display()
            );
        }
    }
    if verified::sha256_file(staged.path())? != VIA_SHA256 {
        bail!(
            "the VIA dataset obtained does not match its sha256 {VIA_SHA256}; nothing was \
             installed"
        );
    }
    crate::output::set_readable(staged.as_file())?;
    staged
        .persist(&dest)
        .with_context(|| format!("cannot move the VIA dataset to {}", dest.display()))?;
    verified::matches(&dest, None, VIA_SHA256)?;
    Ok(dest)
}
