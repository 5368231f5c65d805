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
