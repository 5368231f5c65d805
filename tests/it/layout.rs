//! The shape of `src/` stays what a newcomer can read: no import cycle between modules,
//! no file over 700 lines, no function over 80 lines (but the few `tools/layout.py`
//! names, each with its reason). The rules and their exact reading are in that script.
use std::path::Path;
use std::process::Command;

#[test]
fn no_import_cycles_no_long_files_or_functions() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("python3")
        .arg(root.join("tools/layout.py"))
        .arg(root.join("src"))
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "tools/layout.py found:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// README's layout names every file under `src/`: by its path, as one of a `{a,b}.rs`
/// group, or by its folder (`src/keys/`).
#[test]
fn the_readme_layout_names_every_source_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let layout = readme
        .split("## Layout")
        .nth(1)
        .and_then(|s| s.split("```").nth(1))
        .expect("README has a Layout block");
    let mut named: Vec<String> = Vec::new();
    for line in layout.lines() {
        let Some(first) = line.split_whitespace().next() else {
            continue;
        };
        match (first.find('{'), first.find('}')) {
            (Some(a), Some(b)) => {
                for part in first[a + 1..b].split(',') {
                    named.push(format!("{}{part}{}", &first[..a], &first[b + 1..]));
                }
            }
            _ => named.push(first.to_owned()),
        }
    }
    let mut missing = Vec::new();
    let mut stack = vec![root.join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let listed = named
                .iter()
                .any(|n| *n == rel || (n.ends_with('/') && rel.starts_with(n.as_str())));
            if !listed {
                missing.push(rel);
            }
        }
    }
    missing.sort();
    assert!(
        missing.is_empty(),
        "README's layout does not name {missing:?}"
    );
}
