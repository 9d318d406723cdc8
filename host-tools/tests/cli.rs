//! The `eq` binary end to end: demo model, inference, and one-line errors with exit code 1.

mod common;

use common::{eq, fails_with, s, temp_dir};
use std::path::Path;

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
        b"7767517\n3 2\nInput data 0 1 data\nFoo f 1 1 data y\n",
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

/// `--batch`: N items in one call equal N separate calls, stacked along a leading dimension.
#[test]
fn batch_runs_every_item_and_stacks_the_outputs() {
    let dir = temp_dir("batch");
    assert!(eq(&["demo", "--out", &s(&dir)]).status.success());
    let (param, bin) = (s(&dir.join("demo.param")), s(&dir.join("demo.bin")));
    let item = eq_tools::npy::read(&dir.join("input.npy")).unwrap();
    let items = 3;
    let mut batch = Vec::new();
    for i in 0..items {
        batch.extend(item.data.iter().map(|v| v * (1.0 - 0.4 * i as f32)));
    }
    let batch_path = dir.join("batch.npy");
    eq_tools::npy::write(&batch_path, &[items, 3, 32, 32], &batch).unwrap();

    let infer = |input: &Path, out_dir: &Path, extra: &[&str]| {
        let mut args: Vec<String> = ["infer", "--param", &param, "--bin", &bin, "--threads", "2"]
            .map(String::from)
            .to_vec();
        args.push(format!("--in=data={}", s(input)));
        for blob in ["prob", "conv0"] {
            args.push(format!(
                "--out={blob}={}",
                s(&out_dir.join(format!("{blob}.npy")))
            ));
        }
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = eq(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let text = infer(&batch_path, &dir.join("batched"), &["--batch"]);
    assert!(text.contains("wrote prob (3, 10)"), "{text}");
    let prob = eq_tools::npy::read(&dir.join("batched/prob.npy")).unwrap();
    let conv0 = eq_tools::npy::read(&dir.join("batched/conv0.npy")).unwrap();
    assert_eq!(prob.dims, vec![3, 10]);
    assert_eq!(conv0.dims, vec![3, 16, 32, 32]);
    for i in 0..items {
        let one = dir.join(format!("item{i}.npy"));
        eq_tools::npy::write(&one, &[3, 32, 32], &batch[i * 3072..(i + 1) * 3072]).unwrap();
        let out_dir = dir.join(format!("single{i}"));
        infer(&one, &out_dir, &[]);
        let p = eq_tools::npy::read(&out_dir.join("prob.npy")).unwrap();
        let c = eq_tools::npy::read(&out_dir.join("conv0.npy")).unwrap();
        assert_eq!(p.dims, vec![10]);
        assert_eq!(p.data, prob.data[i * 10..(i + 1) * 10], "item {i}");
        assert_eq!(c.data, conv0.data[i * 16384..(i + 1) * 16384], "item {i}");
    }
    // The items differ, so the comparison above is not vacuous.
    assert_ne!(prob.data[..10], prob.data[20..30]);

    // Without --out: the shapes of the first item's outputs.
    let out = eq(&[
        "infer",
        "--param",
        &param,
        "--bin",
        &bin,
        "--batch",
        "--in",
        &format!("data={}", s(&batch_path)),
    ]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("prob: shape (10,) first values:"), "{text}");
    assert!(text.contains("features: shape (8, 16, 16)"), "{text}");

    // A file without the batch dimension no longer matches the declared item shape.
    fails_with(
        &[
            "infer",
            "--param",
            &param,
            "--bin",
            &bin,
            "--batch",
            "--in",
            &format!("data={}", s(&dir.join("input.npy"))),
        ],
        &["input.npy", "per item", "(32, 32)", "(3, 32, 32)"],
    );
    // A batch file without --batch gets a hint.
    fails_with(
        &[
            "infer",
            "--param",
            &param,
            "--bin",
            &bin,
            "--in",
            &format!("data={}", s(&batch_path)),
        ],
        &["batch.npy", "(3, 3, 32, 32)", "--batch"],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Two inputs with different item counts are an error naming both files.
#[test]
fn batch_counts_must_agree() {
    let dir = temp_dir("batchcount");
    let param = dir.join("m.param");
    let bin = dir.join("m.bin");
    std::fs::write(
        &param,
        "7767517\n3 3\nInput a 0 1 x\nInput b 0 1 y\nBinaryOp add 2 1 x y z 0=0\n",
    )
    .unwrap();
    std::fs::write(&bin, b"").unwrap();
    let (x, y, z) = (dir.join("x.npy"), dir.join("y.npy"), dir.join("z.npy"));
    eq_tools::npy::write(&x, &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    eq_tools::npy::write(&y, &[2, 3], &[10.0, 20.0, 30.0, 40.0, 50.0, 60.0]).unwrap();
    let base = |y_path: &Path| {
        [
            "infer".to_string(),
            "--param".into(),
            s(&param),
            "--bin".into(),
            s(&bin),
            "--batch".into(),
            format!("--in=x={}", s(&x)),
            format!("--in=y={}", s(y_path)),
            format!("--out=z={}", s(&z)),
        ]
    };
    let args = base(&y);
    let out = eq(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = eq_tools::npy::read(&z).unwrap();
    assert_eq!(got.dims, vec![2, 3]);
    assert_eq!(got.data, vec![11.0, 22.0, 33.0, 44.0, 55.0, 66.0]);

    let y3 = dir.join("y3.npy");
    eq_tools::npy::write(&y3, &[3, 2], &[0.0; 6]).unwrap();
    let args = base(&y3);
    fails_with(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        &["y3.npy", "3 items", "x.npy", "2"],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `--precision` reaches the runtime: every value runs the demo (it has no int8 scales, so all
/// give the fp32 result), and a bad value is a one-line error.
#[test]
fn precision_values() {
    let dir = temp_dir("precision");
    assert!(eq(&["demo", "--out", &s(&dir)]).status.success());
    let (param, bin) = (s(&dir.join("demo.param")), s(&dir.join("demo.bin")));
    let input = format!("data={}", s(&dir.join("input.npy")));
    let run = |precision: &str| {
        let out_path = dir.join(format!("prob-{precision}.npy"));
        let out = eq(&[
            "infer",
            "--param",
            &param,
            "--bin",
            &bin,
            "--in",
            &input,
            "--out",
            &format!("prob={}", s(&out_path)),
            "--precision",
            precision,
        ]);
        assert!(
            out.status.success(),
            "{precision}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        eq_tools::npy::read(&out_path).unwrap()
    };
    let fp32 = run("fp32");
    assert_eq!(fp32.dims, vec![10]);
    assert_eq!(run("auto").data, fp32.data);
    for p in ["int8", "int7"] {
        assert_eq!(run(p).dims, vec![10], "{p}");
    }
    fails_with(
        &[
            "infer",
            "--param",
            &param,
            "--bin",
            &bin,
            "--in",
            &input,
            "--precision",
            "int4",
        ],
        &[
            "--precision",
            "unknown precision `int4`",
            "auto, fp32, int8 or int7",
        ],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
