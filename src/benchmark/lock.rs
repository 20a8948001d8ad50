//! One run at a time per results folder: an exclusive advisory lock on `<out>/.valuelens.lock`,
//! held for as long as the run, which records who holds it. The operating system releases the
//! lock when its process ends, however it ends, so a lock left by a dead process never blocks.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};

/// The lock file's name inside a results folder.
pub const LOCK_FILE: &str = ".valuelens.lock";

/// A held lock on a results folder; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

impl RunLock {
    /// Creates `out` if needed and locks it, or says which process holds it.
    pub fn acquire(out: &Path) -> Result<Self> {
        fs::create_dir_all(out).with_context(|| {
            format!(
                "cannot create the results folder {}: is its parent writable?",
                out.display()
            )
        })?;
        let path = out.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open the lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = match holder.trim() {
                    "" => "another process".to_string(),
                    text => text.to_string(),
                };
                bail!(
                    "{} is in use by another valuelens run ({holder}); wait for it to end or \
                     use another --out folder",
                    out.display()
                );
            }
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
        // The holder's description, for the message a second run gets.
        let description = format!("process {} on {}", std::process::id(), host_name());
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        file.write_all(description.as_bytes())?;
        file.flush()?;
        Ok(Self { _file: file })
    }
}

fn host_name() -> String {
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
}
