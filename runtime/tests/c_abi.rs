//! The C header against the Rust side: every function declared in include/eqrt.h is a
//! `#[no_mangle] extern "C"` function of src/capi.rs and the other way round, the status and
//! precision constants agree, and (when a C compiler is installed) C programs compiled with
//! `-Wall -Wextra -Werror` against the header link with the static library and run. Also:
//! set input / run / get output through the C ABI do not allocate.
//! scripts/test-c-abi.sh also builds the example for aarch64 and runs it under qemu.

use eq_runtime::capi::{eq_last_error, eq_options_free, eq_options_new, eq_options_register_layer};
use eq_runtime::capi::{eq_net_free, eq_net_get_output, eq_net_load_memory, eq_net_run};
use eq_runtime::capi::{eq_net_set_input, EqCustomLayer, EqNet, EqOptions, EqShape};
use eq_runtime::capi::{
    Status, EQ_PRECISION_AUTO, EQ_PRECISION_FP32, EQ_PRECISION_INT7, EQ_PRECISION_INT8,
};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::ptr::{null, null_mut};

const HEADER: &str = include_str!("../include/eqrt.h");
const CAPI: &str = include_str!("../src/capi.rs");

/// The text without C comments.
fn strip_c_comments(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("/*") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("*/").expect("unterminated comment") + start + 2;
        rest = &rest[end..];
    }
    out.push_str(rest);
    out.lines()
        .map(|l| l.split("//").next().unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Names `eq_*` directly followed by `(`: the header's function declarations.
fn header_functions() -> BTreeSet<String> {
    let text = strip_c_comments(HEADER);
    let mut names = BTreeSet::new();
    for (i, _) in text.match_indices("eq_") {
        if text[..i].ends_with(is_ident) {
            continue;
        }
        let name: String = text[i..].chars().take_while(|&c| is_ident(c)).collect();
        if text[i + name.len()..].trim_start().starts_with('(') {
            names.insert(name);
        }
    }
    names
}

/// `extern "C" fn` names of capi.rs; each must be `#[no_mangle]`.
fn rust_functions() -> BTreeSet<String> {
    let lines: Vec<&str> = CAPI.lines().collect();
    let mut names = BTreeSet::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(at) = line.find("extern \"C\" fn ") else {
            continue;
        };
        let name: String = line[at + 14..]
            .chars()
            .take_while(|&c| is_ident(c))
            .collect();
        assert!(
            i > 0 && lines[i - 1].trim() == "#[no_mangle]",
            "`{name}` in capi.rs is not #[no_mangle]"
        );
        names.insert(name);
    }
    names
}

/// `EQ_NAME = value` pairs of the header's enums.
fn header_constants() -> BTreeSet<(String, i32)> {
    strip_c_comments(HEADER)
        .split([',', '\n', '{', '}'])
        .filter_map(|item| {
            let (name, value) = item.split_once('=')?;
            let name = name.trim();
            name.starts_with("EQ_")
                .then(|| (name.to_string(), value.trim().parse().unwrap()))
        })
        .collect()
}

#[test]
fn header_declares_exactly_the_exported_functions() {
    let header = header_functions();
    let rust = rust_functions();
    assert!(header.len() >= 20, "{header:?}");
    assert_eq!(
        header,
        rust,
        "eqrt.h and src/capi.rs disagree: only in the header: {:?}, only in Rust: {:?}",
        header.difference(&rust).collect::<Vec<_>>(),
        rust.difference(&header).collect::<Vec<_>>()
    );
}

#[test]
fn header_constants_match_the_rust_values() {
    let mut rust: BTreeSet<(String, i32)> = Status::ALL
        .iter()
        .map(|s| (s.name().to_str().unwrap().to_string(), *s as i32))
        .collect();
    for (name, value) in [
        ("EQ_PRECISION_AUTO", EQ_PRECISION_AUTO),
        ("EQ_PRECISION_FP32", EQ_PRECISION_FP32),
        ("EQ_PRECISION_INT8", EQ_PRECISION_INT8),
        ("EQ_PRECISION_INT7", EQ_PRECISION_INT7),
    ] {
        rust.insert((name.to_string(), value));
    }
    assert_eq!(header_constants(), rust);
}

/// The static library cargo built for this test run: `cargo test` writes it next to the
/// test binaries (target/<profile>/deps/), unlike `cargo build` (target/<profile>/). None
/// under an emulator (scripts/test-c-abi.sh covers the cross build).
fn staticlib() -> Option<PathBuf> {
    if std::env::var_os("EQ_TEST_RUNNER").is_some() {
        return None;
    }
    let exe = std::env::current_exe().ok()?;
    let lib = exe.parent()?.join("libeq_runtime.a");
    lib.exists().then_some(lib)
}

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok()
}

/// Everything needed to build C programs here, or why a test does nothing.
fn c_toolchain() -> Option<PathBuf> {
    let lib = staticlib();
    if lib.is_none() || !have("cc") {
        eprintln!("c_abi: no C compiler or static library here; skipping the C build");
        return None;
    }
    lib
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .into()
}

/// Compiles `source` with warnings as errors and links it with the static library.
fn build_c(source: &Path, lib: &Path, out_name: &str) -> PathBuf {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(out_name);
    let include = Path::new(env!("CARGO_MANIFEST_DIR")).join("include");
    let status = Command::new("cc")
        .args([
            "-std=c99",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
            "-O1",
        ])
        .arg("-I")
        .arg(&include)
        .arg(source)
        .arg(lib)
        .args(["-lpthread", "-ldl", "-lm", "-o"])
        .arg(&out)
        .status()
        .expect("cc runs");
    assert!(status.success(), "cc failed on {}", source.display());
    out
}

#[test]
fn exported_symbols_match_the_header() {
    let Some(lib) = staticlib() else {
        eprintln!("c_abi: no static library next to the test binary; skipping nm");
        return;
    };
    let out = match Command::new("nm")
        .args(["-g", "--defined-only"])
        .arg(&lib)
        .output()
    {
        Ok(out) if out.status.success() => out,
        _ => {
            eprintln!("c_abi: nm is missing or cannot read the library; skipping");
            return;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let exported: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .filter(|s| s.starts_with("eq_"))
        .map(str::to_string)
        .collect();
    assert_eq!(exported, header_functions());
}

#[test]
fn every_prototype_compiles_links_and_runs() {
    let Some(lib) = c_toolchain() else { return };
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/all_functions.c");
    let exe = build_c(&source, &lib, "all_functions");
    let out = Command::new(&exe).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn c_custom_layer_runs_a_focus_model() {
    let Some(lib) = c_toolchain() else { return };
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/custom_layer.c");
    let exe = build_c(&source, &lib, "custom_layer");
    let out = Command::new(&exe).output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn c_example_runs_the_builtin_model() {
    let Some(lib) = c_toolchain() else { return };
    let exe = build_c(&repo_root().join("examples/c/classify.c"), &lib, "classify");
    let out = Command::new(&exe).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("output prob: dims 1  w 5"), "{stdout}");
    assert!(stdout.contains("top 1: index"), "{stdout}");
    assert!(stdout.contains("classify: ok"), "{stdout}");
    // With worker threads pinned to every CPU.
    let out = Command::new(&exe)
        .args(["--threads", "2", "--cluster", "all"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

mod common;
use common::{count_allocations, CNet};

#[test]
fn set_input_run_and_get_output_do_not_allocate() {
    let param = "7767517\n3 3\nInput data 0 1 data 0=3 1=3 2=2\n\
        Convolution conv 1 1 data conv 0=4 1=3 4=1 5=1 6=72 9=1\n\
        Softmax prob 1 1 conv prob 0=0\n";
    let mut bin = vec![0u8; 4 + 4 * (72 + 4)];
    for (i, b) in bin.iter_mut().enumerate().skip(4) {
        *b = if i % 4 == 3 { 0x3c } else { 0 }; // small positive floats
    }
    let mut net = CNet::load(param, &bin, 1);
    let input: Vec<f32> = (0..18).map(|i| i as f32 * 0.1).collect();
    let mut out = vec![0.0f32; 36]; // CNet::run checks that all 36 values came back
    net.run(c"data", &input, c"prob", &mut out); // first use of this thread's error slot
    let ((), allocations) = count_allocations(|| {
        for _ in 0..5 {
            net.run(c"data", &input, c"prob", &mut out);
        }
    });
    assert_eq!(allocations, 0);
    let sum: f32 = out.iter().sum();
    // Softmax over channels: 1 per pixel, 9 pixels.
    assert!((sum - 9.0).abs() < 1e-4, "{sum}");
}

/// Focus (space-to-depth) as C callbacks written in Rust: runs where no C compiler is.
unsafe extern "C" fn focus_shapes(
    _state: *mut std::ffi::c_void,
    inputs: *const EqShape,
    input_count: usize,
    outputs: *mut EqShape,
    output_count: *mut usize,
    error: *mut std::ffi::c_char,
) -> std::ffi::c_int {
    let x = *inputs;
    if input_count != 1 || x.dims != 3 || x.w % 2 != 0 || x.h % 2 != 0 {
        let msg = c"Focus: odd input";
        std::ptr::copy_nonoverlapping(msg.as_ptr(), error, msg.to_bytes_with_nul().len());
        return 1;
    }
    *outputs = EqShape {
        w: x.w / 2,
        h: x.h / 2,
        c: x.c * 4,
        ..x
    };
    *output_count = 1;
    0
}

unsafe extern "C" fn focus_forward(
    _state: *mut std::ffi::c_void,
    inputs: *const *const f32,
    input_shapes: *const EqShape,
    _input_count: usize,
    outputs: *const *mut f32,
    _output_shapes: *const EqShape,
    _output_count: usize,
    _error: *mut std::ffi::c_char,
) -> std::ffi::c_int {
    let s = *input_shapes;
    let (w, h, c) = (s.w as usize, s.h as usize, s.c as usize);
    let x = std::slice::from_raw_parts(*inputs, w * h * c);
    let y = std::slice::from_raw_parts_mut(*outputs, w * h * c);
    let (ow, oh) = (w / 2, h / 2);
    for (i, v) in y.iter_mut().enumerate() {
        let (xx, yy, ch) = (i % ow, (i / ow) % oh, i / (ow * oh));
        let (k, q) = (ch / c, ch % c);
        *v = x[(q * h + 2 * yy + k % 2) * w + 2 * xx + k / 2];
    }
    0
}

#[test]
fn custom_layer_through_the_c_abi_runs_without_allocating() {
    let layer = EqCustomLayer {
        user_data: null_mut(),
        create: None,
        output_shapes: Some(focus_shapes),
        forward: Some(focus_forward),
        destroy: None,
    };
    let param = "7767517\n2 2\nInput data 0 1 data 0=4 1=2 2=1\nFocus f 1 1 data out\n";
    let mut opts: *mut EqOptions = null_mut();
    let mut net: *mut EqNet = null_mut();
    unsafe {
        assert_eq!(eq_options_new(&mut opts), 0);
        assert_eq!(
            eq_options_register_layer(opts, c"Focus".as_ptr(), &layer),
            0
        );
        let status = eq_net_load_memory(
            param.as_ptr().cast(),
            param.len(),
            null(),
            0,
            opts,
            &mut net,
        );
        assert_eq!(status, 0);
    }
    // Row 0: 0 1 2 3, row 1: 4 5 6 7 -> phases (0,0) (1,0) (0,1) (1,1) of each 2x2 block.
    let input: Vec<f32> = (0..8).map(|i| i as f32).collect();
    let mut out = [0.0f32; 8];
    let mut step = || unsafe {
        assert_eq!(
            eq_net_set_input(net, c"data".as_ptr(), input.as_ptr(), 8),
            0
        );
        assert_eq!(eq_net_run(net), 0);
        let status = eq_net_get_output(
            net,
            c"out".as_ptr(),
            out.as_mut_ptr(),
            8,
            null_mut(),
            null_mut(),
        );
        assert_eq!(status, 0);
    };
    step();
    let ((), allocations) = count_allocations(&mut step);
    assert_eq!(allocations, 0);
    assert_eq!(out, [0.0, 2.0, 4.0, 6.0, 1.0, 3.0, 5.0, 7.0]);
    assert_eq!(eq_net_free(net), 0);
    // Shape inference failing at load: the callback's message, naming the layer.
    let odd = param.replace("0=4", "0=3");
    let status =
        unsafe { eq_net_load_memory(odd.as_ptr().cast(), odd.len(), null(), 0, opts, &mut net) };
    assert_eq!(status, Status::Model as i32);
    let msg = unsafe { std::ffi::CStr::from_ptr(eq_last_error()) };
    assert_eq!(msg.to_str().unwrap(), "layer `f` (Focus): Focus: odd input");
    assert_eq!(eq_options_free(opts), 0);
}
