//! Files checked against a known sha256. A stamp file beside a checked file remembers the
//! check for the file's current size and modification time, so a large file is hashed once,
//! not on every use.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

/// Whether `path` has exactly the bytes whose sha256 is `sha256` (and `size` bytes, if given).
pub fn matches(path: &Path, size: Option<u64>, sha256: &str) -> Result<bool> {
    matches_stamped_at(path, size, sha256, &stamp_path(path))
}

/// [`matches`], with the stamp kept at `stamp_path` (for files in folders that belong to
/// another program, such as Ollama's blob store).
pub fn matches_stamped_at(
    path: &Path,
    size: Option<u64>,
    sha256: &str,
    stamp_path: &Path,
) -> Result<bool> {
    let meta = fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if size.is_some_and(|s| s != meta.len()) {
        return Ok(false);
    }
    let stamp = format!("{sha256} {} {}", meta.len(), mtime_nanos(&meta));
    if fs::read_to_string(stamp_path).is_ok_and(|s| s.trim() == stamp) {
        return Ok(true);
    }
    if sha256_file(path)? != sha256 {
        return Ok(false);
    }
    // The stamp is only a cache: failing to write it costs a re-hash next time, nothing more.
    if let Some(dir) = stamp_path.parent() {
        let _ = fs::create_dir_all(dir);
    }
    let _ = fs::write(stamp_path, stamp);
    Ok(true)
}

fn stamp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".verified");
    path.with_file_name(name)
}

fn mtime_nanos(meta: &fs::Metadata) -> u128 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos())
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher)?;
    Ok(hex(&hasher.finalize()))
}

/// The sha256 of a folder's checkpoint files: of the list of its `.json` and `.safetensors`
/// files' names and sha256, so that any change to any of them shows.
pub fn sha256_folder(path: &Path) -> Result<String> {
    let mut files: Vec<_> = fs::read_dir(path)
        .with_context(|| format!("cannot list {}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            p.is_file() && (name.ends_with(".json") || name.ends_with(".safetensors"))
        })
        .collect();
    files.sort();
    let mut listing = String::new();
    for file in files {
        let name = file.file_name().unwrap_or_default().to_string_lossy();
        listing.push_str(&format!("{}  {name}\n", sha256_file(&file)?));
    }
    Ok(sha256_bytes(listing.as_bytes()))
}

pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
