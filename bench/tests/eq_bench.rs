//! Runs the built `eq-bench` binary on small models written to a temp dir.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const KEYS: [&str; 13] = [
    "model",
    "precision",
    "threads",
    "min_ms",
    "median_ms",
    "avg_ms",
    "cluster",
    "cpus",
    "cores",
    "parts",
    "loops",
    "warmup",
    "commit",
];

/// A fresh temp directory with two models: one declaring its input shape, one not.
fn models(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("eq-bench-it-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("small.param"),
        "7767517\n3 4\nInput in 0 1 data 0=16 1=12 2=4\nReLU relu 1 1 data r\n\
         Split split 1 2 r o1 o2\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("noshape.param"),
        "7767517\n2 2\nInput in 0 1 data\nReLU relu 1 1 data out\n",
    )
    .unwrap();
    dir
}

/// Starts eq-bench, through `EQ_TEST_RUNNER` (e.g. qemu-aarch64) when the tests run emulated:
/// an emulated process cannot exec a foreign binary directly.
fn eq_bench(args: &[&str]) -> Output {
    let exe = env!("CARGO_BIN_EXE_eq-bench");
    let runner = std::env::var("EQ_TEST_RUNNER").unwrap_or_default();
    let mut words = runner.split_whitespace();
    let mut cmd = match words.next() {
        Some(prog) => {
            let mut c = Command::new(prog);
            c.args(words).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    cmd.args(args).output().expect("eq-bench starts")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn p(dir: &Path, file: &str) -> String {
    dir.join(file).display().to_string()
}

#[test]
fn writes_one_json_record_per_timed_run() {
    let dir = models("json");
    let json = p(&dir, "out.json");
    let models = format!("{},{}", p(&dir, "small.param"), p(&dir, "noshape.param"));
    let out = eq_bench(&[
        "--model",
        &models,
        "--shape",
        "8,8,3",
        "--precision",
        "fp32,int8,int7",
        "--threads",
        "1,2",
        "--cluster",
        "all",
        "--loops",
        "3",
        "--warmup",
        "1",
        "--cooldown",
        "0",
        "--json",
        &json,
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));

    // 2 models x 3 precisions x 2 thread counts; zero weights, so int8/int7 run the fp32
    // models quantized with fixed scales: nothing is skipped.
    let lines: Vec<&str> = stdout.lines().filter(|l| l.contains("threads =")).collect();
    assert_eq!(lines.len(), 12, "{stdout}");
    assert!(!stdout.contains("skipped"), "{stdout}");
    assert!(
        lines[0].starts_with(&format!("{:>20}  fp32", "small")),
        "{stdout}"
    );
    assert!(lines[0].contains("median ="), "{stdout}");
    assert!(lines.iter().all(|l| l.contains("median =")), "{stdout}");

    // Then the seed paper's table: INT8 and INT7 per thread count, one row per model.
    let table: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("cluster all"))
        .collect();
    assert!(
        table[0].contains("in place of the seed's TRT-INT8"),
        "{stdout}"
    );
    assert_eq!(
        table[1],
        "| Models | EQ-INT8(#1) | EQ-INT7(#1) | EQ-INT8(#2) | EQ-INT7(#2) |"
    );
    assert!(table[3].starts_with("| small | ") && table[4].starts_with("| noshape | "));
    assert_eq!(table[3].matches(" | ").count(), 4, "{stdout}");
    assert!(!table[3].contains('-'), "{stdout}");
    let commit = stdout
        .lines()
        .find_map(|l| l.split_once("commit = ").map(|(_, c)| c.to_string()))
        .expect("a commit line");
    // Embedded at build time by bench/build.rs.
    assert_eq!(commit, env!("EQ_GIT_COMMIT"));
    assert!(
        commit == "unknown" || commit.chars().all(|c| c.is_ascii_hexdigit()),
        "{commit}"
    );
    // Which micro-kernels the numbers came from: one fp32, int8 and int7 name each (per core
    // type on aarch64).
    let kernels = stdout
        .lines()
        .find(|l| l.starts_with("kernels: fp32 = "))
        .expect("a kernels line");
    assert!(
        kernels.contains("int8 = ") && kernels.contains("int7 = "),
        "{kernels}"
    );

    let report = std::fs::read_to_string(&json).unwrap();
    let trimmed = report.trim();
    assert!(
        trimmed.starts_with('[') && trimmed.ends_with(']'),
        "{report}"
    );
    let records: Vec<&str> = trimmed[1..trimmed.len() - 1]
        .split("},")
        .map(str::trim)
        .collect();
    assert_eq!(records.len(), 12, "{report}");
    for r in &records {
        assert!(r.starts_with('{'), "{r}");
        for key in KEYS {
            assert_eq!(r.matches(&format!("\"{key}\":")).count(), 1, "{key} in {r}");
        }
        assert!(r.contains(&format!("\"commit\": \"{commit}\"")), "{r}");
        assert!(
            r.contains("\"loops\": 3") && r.contains("\"warmup\": 1"),
            "{r}"
        );
        assert!(r.contains("\"cluster\": \"all\""), "{r}");
        // Under qemu (scripts/test-aarch64.sh) the part number is the emulated core's.
        let part = match std::env::var("EQ_EXPECT_CPU").as_deref() {
            Ok("cortex-a53") => Some("\"parts\": [\"0xd03\"]"),
            Ok("cortex-a72") => Some("\"parts\": [\"0xd08\"]"),
            _ => None,
        };
        if let Some(part) = part {
            assert!(r.contains(part), "{r}");
        }
    }
    // The same report read as JSON, as scripts do (python3 json.load).
    let parsed: serde_json::Value = serde_json::from_str(&report).unwrap();
    let list = parsed.as_array().expect("a JSON list");
    assert_eq!(list.len(), 12, "{report}");
    for r in list {
        let r = r.as_object().unwrap();
        assert_eq!(r.len(), KEYS.len(), "{r:?}");
        assert!(KEYS.iter().all(|k| r.contains_key(*k)), "{r:?}");
        assert_eq!(r["commit"], commit.as_str());
        assert!(r["median_ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{r:?}");
    }
    assert_eq!(report.matches("\"model\": \"small\"").count(), 6);
    assert_eq!(report.matches("\"model\": \"noshape\"").count(), 6);
    assert_eq!(report.matches("\"threads\": 2,").count(), 6);
    assert_eq!(report.matches("\"precision\": \"int7\"").count(), 4);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn loads_given_weights_and_pins_to_listed_cpus() {
    let dir = models("bin");
    // ReLU and Split have no weights: an empty .bin is complete.
    std::fs::write(dir.join("small.bin"), b"").unwrap();
    let json = p(&dir, "out.json");
    let out = eq_bench(&[
        "--model",
        &p(&dir, "small.param"),
        "--bin",
        &p(&dir, "small.bin"),
        "--cluster=cpus=0",
        "--threads=2",
        "--loops=2",
        "--warmup=0",
        "--json",
        &json,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = std::fs::read_to_string(&json).unwrap();
    assert!(report.contains("\"cpus\": [0]"), "{report}");
    assert!(report.contains("\"cluster\": \"cpus=0\""), "{report}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn errors_are_one_line_with_exit_code_2() {
    let dir = models("errors");
    let small = p(&dir, "small.param");
    let missing = p(&dir, "missing.param");
    let noshape = p(&dir, "noshape.param");
    let missing_bin = p(&dir, "missing.bin");
    let bad_board = p(&dir, "bad.toml");
    std::fs::write(&bad_board, "board = \"b\"\nspeed = 1\n").unwrap();
    let missing_board = p(&dir, "missing.toml");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--model", &small, "--turbo"], "unknown flag `--turbo`"),
        (
            vec!["--model", &small, "--loops", "many"],
            "`many` is not a valid number",
        ),
        (
            vec!["--model", &small, "--threads", "1,-2"],
            "`-2` is not a valid number",
        ),
        (vec!["--model", &missing], "missing.param"),
        (
            vec!["--model", &small, "--bin", &missing_bin],
            "missing.bin",
        ),
        (vec!["--model", &noshape], "give --shape"),
        (
            vec!["--model", &small, "--cluster", "cpus=4095"],
            "cpu 4095 is not on target",
        ),
        (vec!["--loops", "3"], "--model is required"),
        (
            vec!["--model", &small, "--target", &bad_board],
            "bad.toml:2: unknown field `speed`",
        ),
        (
            vec!["--model", &small, "--target", &missing_board],
            "missing.toml",
        ),
    ];
    for (args, want) in cases {
        let out = eq_bench(&args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("eq-bench: "), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: got {stderr}, want {want}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn default_cluster_from_the_target_file_and_layer_times() {
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        return;
    }
    let dir = models("target");
    let target = p(&dir, "board.toml");
    std::fs::write(
        &target,
        "board = \"two\"\n[[cluster]]\nname = \"little\"\ncpus = [0]\ncore = \"generic\"\n\
         l2_kib = 256\n[[cluster]]\nname = \"big\"\ncpus = [1]\ncore = \"generic\"\n",
    )
    .unwrap();
    let json = p(&dir, "out.json");
    let out = eq_bench(&[
        "--model",
        &p(&dir, "small.param"),
        "--target",
        &target,
        "--layers",
        "--loops=2",
        "--warmup=0",
        "--json",
        &json,
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.starts_with("target = two  cluster = big  cpus = [1]"),
        "{stdout}"
    );
    // One per-layer line for ReLU (Split only aliases its input and takes no time).
    let layer_lines: Vec<&str> = stdout.lines().filter(|l| l.contains(" ms ")).collect();
    assert!(
        layer_lines
            .iter()
            .any(|l| l.contains("ReLU") && l.ends_with("relu")),
        "{stdout}"
    );
    let report = std::fs::read_to_string(&json).unwrap();
    assert!(
        report.contains("\"cluster\": \"big\", \"cpus\": [1]"),
        "{report}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn prints_the_gemm_shape_of_every_convolution() {
    let dir = models("gemm");
    // 3x3 conv 4 -> 8 on 16x12 with pad 1 (one GEMM), a depthwise conv (no GEMM), then a
    // 1x1 conv 8 -> 5 with stride 2.
    std::fs::write(
        dir.join("conv.param"),
        "7767517\n4 4\nInput in 0 1 data 0=16 1=12 2=4\n\
         Convolution c1 1 1 data a 0=8 1=3 4=1 5=1 6=288\n\
         ConvolutionDepthWise dw 1 1 a b 0=8 1=3 4=1 5=1 6=72 7=8\n\
         Convolution c2 1 1 b out 0=5 1=1 3=2 5=1 6=40\n",
    )
    .unwrap();
    let out = eq_bench(&["--model", &p(&dir, "conv.param"), "--gemm-shapes"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert_eq!(
        stdout,
        "model conv\n\
         gemm c1 m=8 n=192 k=36 macs=55296\n\
         gemm c2 m=5 n=48 k=8 macs=1920\n"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
