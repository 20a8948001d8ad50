//! The modules of `src/` import only downward: the graph of `use crate::…` (and `super::…`,
//! `self::…`, child-module and inline `crate::…` paths) between them has no cycle, in the
//! library and in the binary (whose `valuelens::…` paths point into the library). Run with
//! `--nocapture` to see each module's imports.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module path, e.g. `["model", "attention", "tree"]`; the crate root is `[]`.
type ModulePath = Vec<String>;

struct Crate {
    /// How the crate's own root is spelled from inside another crate (`valuelens`), if at all.
    modules: BTreeMap<ModulePath, PathBuf>,
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/a/b.rs` → `[a, b]`, `src/a/mod.rs` → `[a]`, `src/lib.rs` and `src/main.rs` → `[]`.
fn module_path(src: &Path, file: &Path) -> ModulePath {
    let relative = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The code of a file without comments and without its `#[cfg(test)]` module (which comes last
/// in every file of this crate).
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod ") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|line| match line.trim_start().starts_with("//") {
            true => "",
            false => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `a::{b, c::{d, e}}` → `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str) -> Vec<String> {
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    let Some(open) = tree.find('{') else {
        return vec![tree];
    };
    let prefix = &tree[..open];
    let Some(close) = tree.rfind('}') else {
        return Vec::new();
    };
    let inner = &tree[open + 1..close];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .flat_map(|p| expand(p).into_iter().map(move |q| format!("{prefix}{q}")))
        .collect()
}

/// Every path a file's code names: `use` trees expanded, and inline paths that start at
/// `crate::`, `super::`, `self::`, `valuelens::` or one of `children` (the file's own child
/// modules, e.g. `open::open_checkpoint(…)` in `model/mod.rs`).
fn paths_in(code: &str, children: &[String]) -> Vec<String> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("use ") {
        let line_start = rest[..i].rfind('\n').map_or(0, |n| n + 1);
        let starts_statement = matches!(
            rest[line_start..i].trim(),
            "" | "pub" | "pub(crate)" | "pub(super)"
        );
        let after = &rest[i + 4..];
        let Some(end) = after.find(';') else { break };
        // Not a `use` inside a string that happens to start a line.
        let is_path = after.starts_with(|c: char| c.is_ascii_alphabetic() || c == '{' || c == ':');
        if starts_statement && is_path {
            let tree = after[..end].split(" as ").next().unwrap_or("");
            paths.extend(expand(tree));
        }
        rest = &after[end..];
    }
    let bytes = code.as_bytes();
    let roots = ["crate", "super", "self", "valuelens"]
        .iter()
        .map(|r| r.to_string())
        .chain(children.iter().cloned())
        .map(|r| format!("{r}::"));
    for root in roots {
        let mut from = 0;
        while let Some(i) = code[from..].find(root.as_str()) {
            let start = from + i;
            from = start + root.len();
            let continues_a_path = start > 0
                && (bytes[start - 1].is_ascii_alphanumeric()
                    || bytes[start - 1] == b'_'
                    || bytes[start - 1] == b':');
            if continues_a_path {
                continue;
            }
            let end = code[start..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .map_or(code.len(), |e| start + e);
            // `super::{a, b}` is a use tree, read whole above.
            if !code[start..end].ends_with("::") {
                paths.push(code[start..end].to_string());
            }
        }
    }
    paths
}

/// The module a path names from `current`, if it is one of `modules` (the longest known prefix;
/// `None` for other crates' paths).
fn target(
    path: &str,
    current: &ModulePath,
    own: &Crate,
    library: Option<&Crate>,
) -> Option<(bool, ModulePath)> {
    let segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    let (mut base, rest, in_library): (ModulePath, &[&str], bool) = match segments.first()? {
        &"crate" => (Vec::new(), &segments[1..], false),
        &"valuelens" if library.is_some() => (Vec::new(), &segments[1..], true),
        &"self" => (current.clone(), &segments[1..], false),
        &"super" => {
            let mut base = current.clone();
            let mut i = 0;
            while segments.get(i) == Some(&"super") {
                base.pop();
                i += 1;
            }
            (base, &segments[i..], false)
        }
        first => {
            let mut child = current.clone();
            child.push(first.to_string());
            if !own.modules.contains_key(&child) {
                return None;
            }
            (current.clone(), &segments[..], false)
        }
    };
    let modules = match in_library {
        true => &library?.modules,
        false => &own.modules,
    };
    for segment in rest {
        let mut next = base.clone();
        next.push(segment.to_string());
        if !modules.contains_key(&next) {
            break;
        }
        base = next;
    }
    Some((in_library, base))
}

fn name(library: bool, module: &ModulePath, bin: bool) -> String {
    let root = match (library, bin) {
        (true, _) | (false, false) => "valuelens",
        (false, true) => "bin",
    };
    if module.is_empty() {
        root.to_string()
    } else {
        format!("{root}::{}", module.join("::"))
    }
}

/// A cycle in `graph`, if there is one, as the list of its modules.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_string(), 1);
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            match state.get(next.as_str()).copied().unwrap_or(0) {
                1 => {
                    let from = stack.iter().position(|n| n == next).unwrap();
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(cycle) = visit(next, graph, state, stack) {
                        return Some(cycle);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(node.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if state.get(node.as_str()).copied().unwrap_or(0) == 0 {
            if let Some(cycle) = visit(node, graph, &mut state, &mut Vec::new()) {
                return Some(cycle);
            }
        }
    }
    None
}

fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let is_bin = |f: &Path| {
        let rel = f.strip_prefix(&src).unwrap();
        rel == Path::new("main.rs") || rel.starts_with("cli")
    };
    let crate_of = |bin: bool| Crate {
        modules: files
            .iter()
            .filter(|f| is_bin(f) == bin)
            .map(|f| (module_path(&src, f), f.clone()))
            .collect(),
    };
    let (library, binary) = (crate_of(false), crate_of(true));
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (own, bin) in [(&library, false), (&binary, true)] {
        for (module, file) in &own.modules {
            let from = name(false, module, bin);
            let edges = graph.entry(from.clone()).or_default();
            let code = code_of(&std::fs::read_to_string(file).unwrap());
            let other = bin.then_some(&library);
            let children: Vec<String> = own
                .modules
                .keys()
                .filter(|m| m.len() == module.len() + 1 && m.starts_with(module))
                .map(|m| m.last().unwrap().clone())
                .collect();
            for path in paths_in(&code, &children) {
                if let Some((in_library, to)) = target(&path, module, own, other) {
                    let to = name(in_library, &to, bin && !in_library);
                    if to != from {
                        edges.insert(to);
                    }
                }
            }
        }
    }
    graph
}

#[test]
fn modules_import_only_downward() {
    let graph = import_graph();
    for (module, imports) in &graph {
        let list: Vec<&str> = imports.iter().map(String::as_str).collect();
        println!("{module} → {}", list.join(", "));
    }
    assert!(graph.len() > 40, "every module of src/ is read");
    assert!(
        graph["valuelens::engine::score"].contains("valuelens::model"),
        "paths resolve to modules"
    );
    assert!(
        graph["bin"].contains("bin::cli::args"),
        "the binary's modules are read"
    );
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import cycle: {}", cycle.join(" → "));
    }
}

#[test]
fn a_cycle_is_found_when_there_is_one() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    graph.entry("a".into()).or_default().insert("b".into());
    graph.entry("b".into()).or_default().insert("c".into());
    assert_eq!(find_cycle(&graph), None);
    graph.entry("c".into()).or_default().insert("a".into());
    assert_eq!(
        find_cycle(&graph).unwrap(),
        ["a", "b", "c", "a"].map(String::from)
    );
}

#[test]
fn use_trees_expand_into_paths() {
    assert_eq!(
        expand("super::{a, b::{c, d}, e}"),
        ["super::a", "super::b::c", "super::b::d", "super::e"].map(String::from)
    );
    let code =
        "use crate::model::{self, Model};\npub use tree::Kernel;\nlet x = crate::output::write(y);";
    let paths = paths_in(code, &["tree".to_string()]);
    assert!(
        paths.contains(&"crate::model::self".to_string()),
        "{paths:?}"
    );
    assert!(paths.contains(&"tree::Kernel".to_string()), "{paths:?}");
    assert!(
        paths.contains(&"crate::output::write".to_string()),
        "{paths:?}"
    );
}
