//! Where valuelens keeps its files: a folder named by an environment variable, else the folder
//! of that name in the source tree the binary was built from, else one in the current folder.

use std::path::{Path, PathBuf};

pub fn project_dir(env_var: &str, folder: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os(env_var) {
        return PathBuf::from(dir);
    }
    let source_tree = Path::new(env!("CARGO_MANIFEST_DIR")).join(folder);
    if source_tree.is_dir() {
        return source_tree;
    }
    PathBuf::from(folder)
}
