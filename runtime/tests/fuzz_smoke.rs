//! A short run of the stable fuzzer (`examples/fuzz_parse.rs`) so parser panics found once
//! stay fixed. Longer runs: `cargo run -p eq-runtime --example fuzz_parse --profile test`.
//! Seeds: the malformed-model corpus and the valid nets of every layer family in
//! `common/text_models.rs`.

#[path = "../examples/fuzz_parse.rs"]
#[allow(dead_code)]
mod fuzz_parse;
#[path = "common/text_models.rs"]
mod text_models;

#[test]
fn mutated_models_never_panic() {
    let corpus = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/malformed");
    let nets = std::env::temp_dir().join(format!("eq-fuzz-seeds-{}", std::process::id()));
    std::fs::create_dir_all(&nets).unwrap();
    for (name, text) in text_models::TEXT_MODELS {
        std::fs::write(nets.join(format!("{name}.param")), text).unwrap();
    }
    let mut stats = fuzz_parse::Stats::default();
    assert_eq!(
        fuzz_parse::fuzz(10_000, 7, &[corpus, nets.clone()], None, &mut stats),
        0
    );
    // The mutations must reach the later stages, not only the header checks.
    assert!(stats.ran > 30, "{stats:?}");
    let _ = std::fs::remove_dir_all(&nets);
}
