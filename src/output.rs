//! Writing files all or nothing: into a temporary file beside the target, renamed into place
//! only once complete, so a failure never leaves a half-written file; and the permissions every
//! file valuelens writes ends up with.

use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result};

/// Writes `value` as one line of JSONL.
pub fn write_json_line(out: &mut dyn Write, value: &impl serde::Serialize) -> Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    out.write_all(b"\n")?;
    Ok(())
}

pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let temp = tempfile::Builder::new()
        .prefix(".valuelens-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(|| {
            format!(
                "cannot write into {}: is the folder there and writable?",
                dir.display()
            )
        })?;
    let mut out = BufWriter::new(temp);
    write(&mut out)?;
    let temp = out.into_inner().map_err(|e| e.into_error())?;
    // Temporary files start private; a result file is as readable as any other.
    set_readable(temp.as_file())?;
    temp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Temporary files are created private (0600); what valuelens writes (results, fetched models
/// and data) is ordinary, readable by all.
#[cfg(unix)]
pub fn set_readable(file: &std::fs::File) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
    Ok(())
}

#[cfg(not(unix))]
pub fn set_readable(_file: &std::fs::File) -> Result<()> {
    Ok(())
}

/// Refuses to write `output` when it is the file `input` names (the same path, a link to it, or
/// another name of the same file), which would replace the input with the output. `flags`
/// names the two options in the message, e.g. `("--input", "--output")`.
pub fn refuse_overwriting_input(input: &Path, output: &Path, flags: (&str, &str)) -> Result<()> {
    let Ok(input_path) = input.canonicalize() else {
        // A missing input is reported by whoever reads it.
        return Ok(());
    };
    let output_path = match output.canonicalize() {
        Ok(path) => path,
        Err(_) => {
            let parent = match output.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            match (parent.canonicalize(), output.file_name()) {
                (Ok(parent), Some(name)) => parent.join(name),
                _ => return Ok(()),
            }
        }
    };
    if input_path == output_path || same_file(input, output) {
        anyhow::bail!(
            "{} {} is the same file as {} {}: writing it would replace the input; choose \
             another {} file",
            flags.1,
            output.display(),
            flags.0,
            input.display(),
            flags.1
        );
    }
    Ok(())
}

#[cfg(unix)]
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_a: &Path, _b: &Path) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writing_over_the_input_is_refused_by_any_name() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("requests.jsonl");
        std::fs::write(&input, "{}\n").unwrap();
        let flags = ("--input", "--output");
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let dotted = sub.join("..").join("requests.jsonl");
        let linked = dir.path().join("hard-link.jsonl");
        std::fs::hard_link(&input, &linked).unwrap();
        for same in [&input, &dotted, &linked] {
            let err = refuse_overwriting_input(&input, same, flags)
                .unwrap_err()
                .to_string();
            assert!(err.contains("same file as --input"), "{err}");
        }
        refuse_overwriting_input(&input, &dir.path().join("scores.jsonl"), flags).unwrap();
        refuse_overwriting_input(&dir.path().join("missing"), &input, flags).unwrap();
    }
}
