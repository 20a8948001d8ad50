//! The registry fetch: a no-op for a verified file, and never a loadable file from a fetch
//! that does not verify.

mod common;

use valuelens::model::sources::registry::{self, Registry};

#[test]
fn ensure_is_a_no_op_when_the_file_is_there_and_valid() {
    let path = common::default_model_path();
    let before = std::fs::metadata(&path).unwrap().modified().unwrap();
    let registry = Registry::builtin().unwrap();
    let entry = registry.get(&registry.default).unwrap();
    let again = registry::ensure(entry, path.parent().unwrap()).unwrap();
    assert_eq!(again, path);
    assert_eq!(
        std::fs::metadata(&path).unwrap().modified().unwrap(),
        before
    );
    assert!(registry::is_verified(entry, &path).unwrap());
}

#[test]
fn a_file_with_other_bytes_does_not_verify() {
    let registry = Registry::builtin().unwrap();
    let entry = registry.get(&registry.default).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join(&entry.file);
    std::fs::write(&fake, vec![0u8; entry.size as usize]).unwrap();
    assert!(!registry::is_verified(entry, &fake).unwrap());
    std::fs::write(&fake, b"short").unwrap();
    assert!(!registry::is_verified(entry, &fake).unwrap());
}

#[test]
fn a_fetch_that_does_not_verify_installs_nothing() {
    let registry = Registry::builtin().unwrap();
    let mut entry = registry.get(&registry.default).unwrap().clone();
    entry.sha256 = "0".repeat(64);
    let dir = tempfile::tempdir().unwrap();
    let err = registry::fetch(&entry, dir.path()).unwrap_err();
    assert!(
        format!("{err:#}").contains("nothing was installed"),
        "{err:#}"
    );
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "the models folder stays empty: {left:?}");
}

#[test]
fn unknown_names_are_refused_with_the_known_ones() {
    let registry = Registry::builtin().unwrap();
    let err = registry.get("gpt-17").unwrap_err();
    assert!(format!("{err}").contains("smollm2-135m"));
}
