//! The documentation: a short README that links every page of docs/, links that lead somewhere,
//! a page for every command whose usage lines name only options the command has, and measured
//! tables that say what their result files say (`scripts/render-results.py --check`, which must
//! also catch a hand-edited figure).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn pages() -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.sort();
    pages
}

/// The targets of a page's markdown links and `src="…"` images, outside code.
fn links(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(end) = after.find(')') else { break };
            found.push(after[..end].to_string());
            rest = &after[end..];
        }
        let mut rest = line;
        while let Some(i) = rest.find("src=\"") {
            let after = &rest[i + 5..];
            let Some(end) = after.find('"') else { break };
            found.push(after[..end].to_string());
            rest = &after[end..];
        }
    }
    found
}

/// GitHub's anchor of a heading: lower case, spaces to dashes, punctuation dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| anchor(l.trim_start_matches('#')))
        .collect()
}

#[test]
fn the_readme_is_short_and_links_every_page() {
    let readme = read(&root().join("README.md"));
    let prose = readme.lines().filter(|l| !l.starts_with('|')).count();
    assert!(
        prose <= 150,
        "README.md has {prose} lines besides its tables"
    );
    assert!(
        readme.starts_with(
            "# valuelens\n\n```sh\ncargo run --release -- run\ncargo test --release\n```"
        ),
        "the two commands come first"
    );
    let linked = links(&readme);
    for page in pages() {
        let name = format!("docs/{}", page.file_name().unwrap().to_string_lossy());
        assert!(linked.contains(&name), "README.md links {name}");
        let text = read(&page);
        assert!(text.starts_with("# "), "{name} starts with its title");
    }
}

#[test]
fn every_link_leads_somewhere() {
    let mut files = vec![root().join("README.md")];
    files.extend(pages());
    for file in files {
        let text = read(&file);
        for link in links(&text) {
            if link.starts_with("http://") || link.starts_with("https://") {
                continue;
            }
            let (path, fragment) = match link.split_once('#') {
                Some((path, fragment)) => (path, Some(fragment)),
                None => (link.as_str(), None),
            };
            let target = match path {
                "" => file.clone(),
                path => file.parent().unwrap().join(path),
            };
            assert!(
                target.exists(),
                "{}: link {link} leads nowhere",
                file.display()
            );
            if let Some(fragment) = fragment {
                assert!(
                    anchors(&read(&target)).contains(fragment),
                    "{}: no heading #{fragment} in {}",
                    file.display(),
                    target.display()
                );
            }
        }
    }
}

fn help(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_valuelens"))
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(output.status.success(), "{args:?} --help");
    String::from_utf8(output.stdout).unwrap()
}

/// The subcommands `valuelens --help` lists.
fn commands() -> Vec<String> {
    let text = help(&[]);
    let list = text
        .split("Commands:")
        .nth(1)
        .unwrap()
        .split("\n\n")
        .next()
        .unwrap();
    list.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(String::from)
        .collect()
}

/// `--flags` a line names.
fn flags(line: &str) -> Vec<String> {
    line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(|w| w.trim_end_matches('-').to_string())
        .collect()
}

#[test]
fn every_command_has_a_page_whose_usage_lines_match_its_help() {
    let readme = read(&root().join("README.md"));
    let mut checked = 0;
    for command in commands() {
        let row = readme
            .lines()
            .find(|l| l.starts_with(&format!("| `valuelens {command}`")))
            .unwrap_or_else(|| panic!("README's table of commands has no row for {command}"));
        let page = links(row)
            .into_iter()
            .find(|l| l.starts_with("docs/"))
            .unwrap_or_else(|| panic!("{command}'s row links its page"));
        let text = read(&root().join(&page));
        assert!(
            text.contains(&format!("valuelens {command}")),
            "{page} says `valuelens {command}`"
        );
        let options: BTreeSet<String> = flags(&help(&[&command])).into_iter().collect();
        // Usage lines in the page's code blocks: `valuelens COMMAND …` and their continuations.
        let mut fenced = false;
        let mut in_usage = false;
        for line in text.lines() {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
                in_usage = false;
                continue;
            }
            if !fenced {
                continue;
            }
            let trimmed = line.trim_start();
            if trimmed.starts_with("valuelens ") {
                in_usage = trimmed.starts_with(&format!("valuelens {command} "))
                    || trimmed == format!("valuelens {command}");
            } else if !(line.starts_with(' ') || line.starts_with('\t')) {
                in_usage = false;
            }
            if !in_usage {
                continue;
            }
            for flag in flags(trimmed.split(" #").next().unwrap()) {
                checked += 1;
                assert!(
                    options.contains(&flag) || flag == "--help",
                    "{page}: `{trimmed}` names {flag}, which `valuelens {command} --help` does not list"
                );
            }
        }
    }
    assert!(
        checked > 40,
        "the pages' usage lines name {checked} options"
    );
}

fn render(root: &Path, check: bool) -> std::process::Output {
    let mut command = Command::new("python3");
    command
        .arg(self::root().join("scripts/render-results.py"))
        .arg("--root")
        .arg(root);
    if check {
        command.arg("--check");
    }
    command.output().expect("python3 runs")
}

#[test]
fn measured_tables_say_what_their_result_files_say() {
    let output = render(root(), true);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // A copy whose README table has one figure edited by hand fails the check, naming it.
    let copy = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(copy.path().join("docs")).unwrap();
    std::fs::create_dir_all(copy.path().join("benches")).unwrap();
    for page in pages() {
        std::fs::copy(
            &page,
            copy.path().join("docs").join(page.file_name().unwrap()),
        )
        .unwrap();
    }
    std::os::unix::fs::symlink(
        root().join("benches/results"),
        copy.path().join("benches/results"),
    )
    .unwrap();
    let readme = read(&root().join("README.md"));
    let edited = readme.replacen("| f32 | 0.4594", "| f32 | 0.4595", 1);
    assert_ne!(edited, readme, "the README shows f32's F1");
    std::fs::write(copy.path().join("README.md"), edited).unwrap();
    let output = render(copy.path(), true);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("README.md line") && stderr.contains("full-protocol"),
        "{stderr}"
    );
    // Rendering puts the data's figure back.
    assert!(render(copy.path(), false).status.success());
    assert_eq!(read(&copy.path().join("README.md")), readme);
}
