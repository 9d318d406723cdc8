//! Helpers shared by the `eq` integration tests: running the binary, scratch folders and the
//! shared data folder (`EQ_SHARED`, default `../shared`). Each test file uses a subset.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs the `eq` binary.
pub fn eq(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eq"))
        .args(args)
        .output()
        .expect("run eq")
}

/// Runs `eq`, expects failure (exit code 1) with exactly one stderr line containing every
/// `needle`.
pub fn fails_with(args: &[&str], needles: &[&str]) {
    let out = eq(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "args {args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("eq: error: "), "{err}");
    for n in needles {
        assert!(err.contains(n), "expected `{n}` in: {err}");
    }
}

/// A fresh, empty scratch folder for this test process (the process id keeps test binaries
/// running at once apart).
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("eq-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn s(p: &Path) -> String {
    p.display().to_string()
}

/// Running under CI (`CI=true`), where missing shared data fails instead of skipping.
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

pub fn shared_dir() -> PathBuf {
    match std::env::var_os("EQ_SHARED") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"),
    }
}

/// True when every path exists. Otherwise fails the test in CI, or prints a note and returns
/// false (the caller then skips) elsewhere.
pub fn require(test: &str, paths: &[&Path]) -> bool {
    let missing: Vec<String> = paths
        .iter()
        .filter(|p| !p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let msg = format!(
        "{test}: missing {} (set EQ_SHARED to the shared folder)",
        missing.join(", ")
    );
    if ci() {
        panic!("{msg}");
    }
    println!("SKIPPED {msg}");
    false
}
