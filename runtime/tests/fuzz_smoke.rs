//! A short run of the stable fuzzer (`examples/fuzz_parse.rs`) so parser panics found once
//! stay fixed. Longer runs: `cargo run -p eq-runtime --example fuzz_parse --profile test`.

#[path = "../examples/fuzz_parse.rs"]
#[allow(dead_code)]
mod fuzz_parse;

#[test]
fn mutated_models_never_panic() {
    let corpus = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/malformed");
    let mut stats = fuzz_parse::Stats::default();
    assert_eq!(fuzz_parse::fuzz(10_000, 7, &[corpus], None, &mut stats), 0);
    // The mutations must reach the later stages, not only the header checks.
    assert!(stats.ran > 30, "{stats:?}");
}
