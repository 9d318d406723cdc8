//! The README's supported-layer table has one row for every layer type `ops::build` knows,
//! and no other: adding an op without documenting it fails here.

use std::collections::BTreeSet;

fn read(rel: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn readme_lists_every_layer_type() {
    let ops = read("src/ops/mod.rs");
    let build = &ops[ops.find("pub fn build(").expect("ops::build")..];
    let build = &build[..build.find("\n}\n").expect("end of ops::build")];
    // Match arms: `"Type" =>` (or `"A" | "B" =>`).
    let known: BTreeSet<String> = build
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('"') && l.contains("=>"))
        .flat_map(|l| l[..l.find("=>").unwrap()].split('|'))
        .map(|t| t.trim().trim_matches('"').to_string())
        .collect();
    assert!(known.len() > 60, "{known:?}");
    let readme = read("../README.md");
    let table = &readme[readme.find("## Supported layers").expect("README section")..];
    let rows: BTreeSet<String> = table
        .lines()
        .take_while(|l| !l.starts_with("## ") || l.starts_with("## Supported"))
        .filter(|l| l.starts_with("| ") && !l.starts_with("| layer"))
        .map(|l| l.split('|').nth(1).unwrap().trim().to_string())
        .collect();
    let missing: Vec<_> = known.difference(&rows).collect();
    let extra: Vec<_> = rows.difference(&known).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "README table: missing {missing:?}, unknown {extra:?}"
    );
}
