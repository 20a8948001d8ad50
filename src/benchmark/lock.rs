//! Who may write into a results folder: one whole run, or any number of shards of one run
//! (`--shard K/N`), never both. A whole run holds an exclusive advisory lock on
//! `<out>/.valuelens.lock`; a shard holds a shared lock on it and an exclusive one on
//! `<out>/.valuelens.shard-K-of-N.lock`, so shards of a run score side by side while a second
//! process of the same shard (a retried array task whose first try still runs) is refused.
//! Each lock file records who holds it. The operating system releases a lock when its process
//! ends, however it ends, so a lock left by a dead process never blocks. (These are `flock`
//! locks; Linux's NFS client maps them onto the server's byte-range locks, so they also hold
//! between machines sharing a results folder over NFS.)

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::shard::Shard;

/// The lock file's name inside a results folder.
pub const LOCK_FILE: &str = ".valuelens.lock";
/// Held (briefly, waiting for it) while a process checks and binds the folder's configuration.
const BIND_LOCK_FILE: &str = ".valuelens.bind.lock";

/// Whether `name` is one of the lock files of a results folder.
pub fn is_lock_file(name: &str) -> bool {
    name.starts_with(".valuelens.") && name.ends_with(".lock")
}

/// A held lock on a results folder; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct RunLock {
    _files: Vec<File>,
}

fn open_lock_file(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))
}

fn create_folder(out: &Path) -> Result<()> {
    fs::create_dir_all(out).with_context(|| {
        format!(
            "cannot create the results folder {}: is its parent writable?",
            out.display()
        )
    })
}

/// Writes who holds `file` into it, for the message the next process gets.
fn record_holder(file: &mut File, role: &str) -> Result<()> {
    let description = format!("{role}process {} on {}", std::process::id(), host_name());
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(description.as_bytes())?;
    file.flush()?;
    Ok(())
}

fn holder_of(file: &mut File) -> String {
    let mut holder = String::new();
    let _ = file.seek(SeekFrom::Start(0));
    let _ = file.read_to_string(&mut holder);
    match holder.trim() {
        "" => "another process".to_string(),
        text => text.to_string(),
    }
}

impl RunLock {
    /// Creates `out` if needed and locks it for a whole run, or says which process holds it.
    pub fn acquire(out: &Path) -> Result<Self> {
        create_folder(out)?;
        let path = out.join(LOCK_FILE);
        let mut file = open_lock_file(&path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holders = match file.try_lock_shared() {
                    // Only shards share the lock: name those still running.
                    Ok(()) => {
                        let shards = running_shards(out);
                        let _ = file.unlock();
                        shards
                    }
                    Err(_) => holder_of(&mut file),
                };
                bail!(
                    "{} is in use by another valuelens run ({holders}); wait for it to end or \
                     give another --out folder",
                    out.display()
                );
            }
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
        record_holder(&mut file, "")?;
        Ok(Self { _files: vec![file] })
    }

    /// Creates `out` if needed and locks it for `shard`: refused while a whole run holds the
    /// folder or another process is the same shard.
    pub fn acquire_shard(out: &Path, shard: Shard) -> Result<Self> {
        create_folder(out)?;
        let path = out.join(LOCK_FILE);
        let mut folder = open_lock_file(&path)?;
        match folder.try_lock_shared() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => bail!(
                "{} is in use by a valuelens run that is not a shard ({}); wait for it to end or \
                 give another --out folder",
                out.display(),
                holder_of(&mut folder)
            ),
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
        let own_path = out.join(format!(".valuelens.{}.lock", shard.file_stem()));
        let mut own = open_lock_file(&own_path)?;
        match own.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => bail!(
                "shard {shard} of {} is already being scored ({}); wait for it to end, or stop it \
                 before starting it again",
                out.display(),
                holder_of(&mut own)
            ),
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", own_path.display()))
            }
        }
        record_holder(&mut own, &format!("shard {shard}, "))?;
        Ok(Self {
            _files: vec![folder, own],
        })
    }
}

/// The shards whose processes hold their lock files in `out`, as their lock files describe
/// them.
fn running_shards(out: &Path) -> String {
    let mut running = Vec::new();
    if let Ok(entries) = fs::read_dir(out) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with(".valuelens.shard-") || !is_lock_file(&name) {
                continue;
            }
            let Ok(mut file) = open_lock_file(&entry.path()) else {
                continue;
            };
            match file.try_lock() {
                Ok(()) => {
                    let _ = file.unlock();
                }
                Err(_) => running.push(holder_of(&mut file)),
            }
        }
    }
    running.sort();
    match running.is_empty() {
        true => "its shards".to_string(),
        false => running.join("; "),
    }
}

/// Runs `bind` — reading and writing the folder's configuration — while no other valuelens
/// process does the same in `out` (waiting for it), so that shards starting together cannot
/// both find the folder unbound and bind it to two configurations.
pub fn while_binding<T>(out: &Path, bind: impl FnOnce() -> Result<T>) -> Result<T> {
    let path = out.join(BIND_LOCK_FILE);
    let file = open_lock_file(&path)?;
    file.lock()
        .with_context(|| format!("cannot lock {}", path.display()))?;
    let result = bind();
    let _ = file.unlock();
    result
}

/// This machine's name, for records of who did what.
pub fn host_name() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "this machine".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_with_the_holder_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("results");
        let first = RunLock::acquire(&out).unwrap();
        let err = RunLock::acquire(&out).unwrap_err().to_string();
        assert!(err.contains(&out.display().to_string()), "{err}");
        assert!(
            err.contains(&format!("process {}", std::process::id())),
            "{err}"
        );
        drop(first);
        RunLock::acquire(&out).unwrap();
    }

    #[test]
    fn a_lock_file_left_by_a_dead_process_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LOCK_FILE), "process 999999 on elsewhere").unwrap();
        let _lock = RunLock::acquire(dir.path()).unwrap();
        let holder = std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
        assert!(
            holder.starts_with(&format!("process {} on ", std::process::id())),
            "{holder}"
        );
    }

    #[test]
    fn shards_share_a_folder_that_a_whole_run_may_not_enter() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        let first = RunLock::acquire_shard(out, Shard::new(0, 3).unwrap()).unwrap();
        let second = RunLock::acquire_shard(out, Shard::new(2, 3).unwrap()).unwrap();
        let again = RunLock::acquire_shard(out, Shard::new(2, 3).unwrap()).unwrap_err();
        assert!(again.to_string().contains("shard 2/3 of"), "{again}");
        let whole = RunLock::acquire(out).unwrap_err().to_string();
        assert!(whole.contains("shard 0/3, process"), "{whole}");
        assert!(whole.contains("shard 2/3, process"), "{whole}");
        drop((first, second));
        let whole = RunLock::acquire(out).unwrap();
        let shard = RunLock::acquire_shard(out, Shard::new(1, 3).unwrap()).unwrap_err();
        assert!(shard.to_string().contains("not a shard"), "{shard}");
        drop(whole);
    }
}
