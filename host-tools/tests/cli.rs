//! The `eq` binary end to end: demo model, inference, and one-line errors with exit code 1.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn eq(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eq"))
        .args(args)
        .output()
        .expect("run eq")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("eq-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// Runs `eq`, expects failure with exactly one stderr line containing every `needle`.
fn fails_with(args: &[&str], needles: &[&str]) {
    let out = eq(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "args {args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("eq: error: "), "{err}");
    for n in needles {
        assert!(err.contains(n), "expected `{n}` in: {err}");
    }
}

#[test]
fn demo_then_infer() {
    let dir = temp_dir("demo");
    let out = eq(&["demo", "--out", &s(&dir)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (param, bin, input) = (
        dir.join("demo.param"),
        dir.join("demo.bin"),
        dir.join("input.npy"),
    );
    let base = ["infer", "--param", &s(&param), "--bin", &s(&bin)].map(String::from);
    let run = |extra: &[String]| {
        let args: Vec<&str> = base.iter().chain(extra).map(String::as_str).collect();
        eq(&args)
    };

    // Without --out: one line per graph output, nothing written.
    let out = run(&[format!("--in=data={}", s(&input))]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("prob: shape (10,) first values:"), "{text}");
    assert!(text.contains("features: shape (8, 16, 16)"), "{text}");
    assert!(!dir.join("prob.npy").exists());

    // With --out, single- and multi-threaded, also intermediate blobs.
    let mut results = Vec::new();
    for threads in ["1", "2"] {
        let path = |blob: &str| dir.join(format!("t{threads}/{blob}.npy"));
        let mut extra = vec![format!("--in=data={}", s(&input))];
        for blob in ["prob", "fc", "conv0", "pool0"] {
            extra.push("--out".into());
            extra.push(format!("{blob}={}", s(&path(blob))));
        }
        extra.extend(["--threads".into(), threads.into()]);
        let out = run(&extra);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let read = |blob: &str| eq_tools::npy::read(&path(blob)).unwrap();
        let (prob, fc, conv0, pool0) = (read("prob"), read("fc"), read("conv0"), read("pool0"));
        assert_eq!(prob.dims, vec![10]);
        assert_eq!(conv0.dims, vec![16, 32, 32]);
        assert_eq!(pool0.dims, vec![16, 16, 16]);
        // prob = softmax(fc)
        let max = fc.data.iter().fold(f32::MIN, |m, v| m.max(*v));
        let sum: f32 = fc.data.iter().map(|v| (v - max).exp()).sum();
        for (p, l) in prob.data.iter().zip(&fc.data) {
            assert!((p - (l - max).exp() / sum).abs() < 1e-6);
        }
        // pool0 = 2x2/2 max pool of conv0 (after its fused ReLU, so >= 0)
        for c in 0..16 {
            for y in 0..16 {
                for x in 0..16 {
                    let at = |yy: usize, xx: usize| conv0.data[(c * 32 + yy) * 32 + xx];
                    let want = at(2 * y, 2 * x)
                        .max(at(2 * y, 2 * x + 1))
                        .max(at(2 * y + 1, 2 * x))
                        .max(at(2 * y + 1, 2 * x + 1));
                    assert_eq!(pool0.data[(c * 16 + y) * 16 + x], want);
                }
            }
        }
        assert!(conv0.data.iter().all(|v| *v >= 0.0));
        results.push(prob.data);
    }
    // The threads split the work, not the arithmetic of any one output.
    assert_eq!(results[0], results[1]);

    // Errors: one line, exit code 1, naming what is wrong.
    let bad = dir.join("bad.npy");
    let with_input = |file: &Path| {
        let mut a: Vec<String> = base.to_vec();
        a.push("--in".into());
        a.push(format!("data={}", s(file)));
        a
    };
    let check = |file_bytes: Vec<u8>, needles: &[&str]| {
        std::fs::write(&bad, file_bytes).unwrap();
        let a = with_input(&bad);
        let args: Vec<&str> = a.iter().map(String::as_str).collect();
        fails_with(&args, needles);
    };
    let npy = |dims: &[usize]| {
        let n = dims.iter().product();
        eq_tools::npy::to_bytes(dims, &vec![0.5; n]).unwrap()
    };
    check(
        npy(&[3, 16, 16]),
        &["bad.npy", "(3, 16, 16)", "(3, 32, 32)"],
    );
    check(npy(&[1, 3, 32, 32]), &["bad.npy", "batch dimension"]);
    check(npy(&[1, 1, 3, 32, 32]), &["bad.npy", "5 dimensions"]);
    let mut f8 = npy(&[2]);
    f8[23] = b'8'; // '<f4' -> '<f8'
    check(f8, &["bad.npy", "'<f8'"]);
    check(b"garbage".to_vec(), &["bad.npy", "bad magic"]);
    let mut trunc = npy(&[3, 32, 32]);
    trunc.truncate(trunc.len() - 4);
    check(trunc, &["bad.npy", "truncated data"]);

    let good = format!("data={}", s(&input));
    let p = s(&param);
    let b = s(&bin);
    fails_with(
        &[
            "infer",
            "--param",
            &p,
            "--bin",
            &b,
            "--in",
            &format!("x={}", s(&input)),
        ],
        &["`x` is not an input blob", "inputs: data"],
    );
    fails_with(
        &[
            "infer",
            "--param",
            &p,
            "--bin",
            &b,
            "--in",
            &good,
            "--out",
            "nope=/tmp/x.npy",
        ],
        &["no blob named `nope`"],
    );
    fails_with(
        &[
            "infer", "--param", &p, "--bin", &b, "--in", &good, "--in", &good,
        ],
        &["given twice"],
    );
    fails_with(
        &[
            "infer",
            "--param",
            "/no/such.param",
            "--bin",
            &b,
            "--in",
            &good,
        ],
        &["/no/such.param"],
    );
    std::fs::write(
        &bad,
        b"7767517\n1 1\nInput data 0 1 data\nFoo f 1 1 data y\n",
    )
    .unwrap();
    fails_with(
        &["infer", "--param", &s(&bad), "--bin", &b, "--in", &good],
        &["bad.npy"],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn input_without_declared_shape_takes_the_file_shape() {
    let dir = temp_dir("noshape");
    let param = dir.join("m.param");
    let bin = dir.join("m.bin");
    std::fs::write(&param, "7767517\n2 2\nInput in 0 1 x\nReLU r 1 1 x y\n").unwrap();
    std::fs::write(&bin, b"").unwrap();
    let x = dir.join("x.npy");
    eq_tools::npy::write(&x, &[2, 3], &[-1.0, 2.0, -3.0, 4.0, -5.0, 6.0]).unwrap();
    let y = dir.join("y.npy");
    let out = eq(&[
        "infer",
        "--param",
        &s(&param),
        "--bin",
        &s(&bin),
        "--in",
        &format!("x={}", s(&x)),
        "--out",
        &format!("y={}", s(&y)),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = eq_tools::npy::read(&y).unwrap();
    assert_eq!(got.dims, vec![2, 3]);
    assert_eq!(got.data, vec![0.0, 2.0, 0.0, 4.0, 0.0, 6.0]);

    // A missing input is named.
    let out = eq(&[
        "infer",
        "--param",
        &s(&param),
        "--bin",
        &s(&bin),
        "--in",
        &format!("y={}", s(&x)),
    ]);
    assert_eq!(out.status.code(), Some(1));
    std::fs::remove_dir_all(&dir).unwrap();
}
