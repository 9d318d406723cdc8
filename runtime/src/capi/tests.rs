//! The C ABI called directly from Rust, as C would: every error path returns a code and a
//! message, nothing panics or crashes.

use super::*;
use std::cell::Cell;
use std::ptr::{null, null_mut};

thread_local! {
    static INJECT_PANIC: Cell<bool> = const { Cell::new(false) };
}

/// Called by `with_net` in test builds: panics once when a test asked for it.
pub(super) fn maybe_injected_panic() {
    if INJECT_PANIC.with(|p| p.replace(false)) {
        panic!("injected test panic");
    }
}

const OK: c_int = Status::Ok as c_int;

fn code(s: Status) -> c_int {
    s as c_int
}

fn last_error() -> String {
    unsafe { CStr::from_ptr(eq_last_error()) }
        .to_str()
        .unwrap()
        .to_string()
}

/// Asserts a status and that the message mentions `needle`.
#[track_caller]
fn expect(got: c_int, want: Status, needle: &str) {
    let msg = last_error();
    assert_eq!(got, code(want), "message: {msg}");
    assert!(msg.contains(needle), "`{msg}` should mention `{needle}`");
    if want == Status::Ok {
        assert!(msg.is_empty());
    }
}

/// data(4) -> InnerProduct 3 (bias) -> Softmax = prob.
const PARAM: &str = "7767517\n3 3\n\
    Input data 0 1 data 0=4\n\
    InnerProduct fc 1 1 data fc 0=3 1=1 2=12\n\
    Softmax prob 1 1 fc prob\n";

const WEIGHTS: [f32; 12] = [
    1.0, 0.0, 0.0, 0.0, //
    0.0, 1.0, 0.0, 0.0, //
    0.5, 0.5, 0.5, 0.5,
];
const BIAS: [f32; 3] = [0.0, 0.5, -1.0];

fn bin() -> Vec<u8> {
    let mut b = 0u32.to_le_bytes().to_vec(); // fp32 tag
    for v in WEIGHTS.iter().chain(&BIAS) {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b
}

/// Softmax(W x + b), computed here by hand.
fn expected(x: &[f32; 4]) -> Vec<f32> {
    let logits: Vec<f32> = (0..3)
        .map(|o| (0..4).map(|i| WEIGHTS[o * 4 + i] * x[i]).sum::<f32>() + BIAS[o])
        .collect();
    let max = logits.iter().cloned().fold(f32::MIN, f32::max);
    let e: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
    let sum: f32 = e.iter().sum();
    e.iter().map(|v| v / sum).collect()
}

fn load(param: &str, opts: *const EqOptions) -> (c_int, *mut EqNet) {
    let bin = bin();
    let mut net = null_mut();
    let status = unsafe {
        eq_net_load_memory(
            param.as_ptr().cast(),
            param.len(),
            bin.as_ptr().cast(),
            bin.len(),
            opts,
            &mut net,
        )
    };
    (status, net)
}

fn loaded() -> *mut EqNet {
    let (status, net) = load(PARAM, null());
    expect(status, Status::Ok, "");
    assert!(!net.is_null());
    net
}

fn new_options() -> *mut EqOptions {
    let mut o = null_mut();
    expect(unsafe { eq_options_new(&mut o) }, Status::Ok, "");
    o
}

fn output(net: *mut EqNet, name: &CStr) -> (c_int, Vec<f32>, usize, EqShape) {
    let mut buf = vec![0.0f32; 16];
    let (mut count, mut shape) = (0usize, EqShape::default());
    let status = unsafe {
        eq_net_get_output(
            net,
            name.as_ptr(),
            buf.as_mut_ptr(),
            buf.len(),
            &mut count,
            &mut shape,
        )
    };
    buf.truncate(count);
    (status, buf, count, shape)
}

fn set_input(net: *mut EqNet, name: &CStr, data: &[f32]) -> c_int {
    unsafe { eq_net_set_input(net, name.as_ptr(), data.as_ptr(), data.len()) }
}

#[test]
fn loads_runs_and_reads_outputs() {
    let net = loaded();
    let x = [0.5f32, -1.0, 2.0, 0.25];
    expect(set_input(net, c"data", &x), Status::Ok, "");
    expect(eq_net_run(net), Status::Ok, "");
    let (status, got, count, shape) = output(net, c"prob");
    expect(status, Status::Ok, "");
    assert_eq!(count, 3);
    assert_eq!(
        shape,
        EqShape {
            dims: 1,
            w: 3,
            h: 1,
            d: 1,
            c: 1
        }
    );
    for (g, e) in got.iter().zip(expected(&x)) {
        assert!((g - e).abs() < 1e-6, "{got:?}");
    }
    // Runs again with another input.
    let y = [0.0f32; 4];
    expect(set_input(net, c"data", &y), Status::Ok, "");
    expect(eq_net_run(net), Status::Ok, "");
    let (_, got, _, _) = output(net, c"prob");
    for (g, e) in got.iter().zip(expected(&y)) {
        assert!((g - e).abs() < 1e-6, "{got:?}");
    }
    expect(eq_net_free(net), Status::Ok, "");
}

#[test]
fn lists_input_and_output_names_and_shapes() {
    let net = loaded();
    let mut n = 0usize;
    expect(unsafe { eq_net_input_count(net, &mut n) }, Status::Ok, "");
    assert_eq!(n, 1);
    let mut name = null();
    expect(
        unsafe { eq_net_input_name(net, 0, &mut name) },
        Status::Ok,
        "",
    );
    assert_eq!(unsafe { CStr::from_ptr(name) }, c"data");
    expect(unsafe { eq_net_output_count(net, &mut n) }, Status::Ok, "");
    assert_eq!(n, 1);
    expect(
        unsafe { eq_net_output_name(net, 0, &mut name) },
        Status::Ok,
        "",
    );
    assert_eq!(unsafe { CStr::from_ptr(name) }, c"prob");
    expect(
        unsafe { eq_net_output_name(net, 1, &mut name) },
        Status::InvalidArgument,
        "out of range",
    );
    assert!(name.is_null());
    let mut shape = EqShape::default();
    expect(
        unsafe { eq_net_blob_shape(net, c"fc".as_ptr(), &mut shape) },
        Status::Ok,
        "",
    );
    assert_eq!((shape.dims, shape.w), (1, 3));
    expect(
        unsafe { eq_net_blob_shape(net, c"nope".as_ptr(), &mut shape) },
        Status::UnknownBlob,
        "nope",
    );
    eq_net_free(net);
}

#[test]
fn null_pointers_are_errors() {
    let net = loaded();
    let param = PARAM.as_bytes();
    let mut out = null_mut();
    unsafe {
        expect(eq_options_new(null_mut()), Status::NullPointer, "out");
        expect(
            eq_options_set_threads(null_mut(), 1),
            Status::NullPointer,
            "options",
        );
        expect(
            eq_options_set_cluster(null_mut(), c"all".as_ptr()),
            Status::NullPointer,
            "options",
        );
        let o = new_options();
        expect(
            eq_options_set_cluster(o, null()),
            Status::NullPointer,
            "cluster",
        );
        expect(
            eq_options_set_cpus(o, null(), 2),
            Status::NullPointer,
            "cpus",
        );
        expect(eq_options_set_cpus(o, null(), 0), Status::Ok, "");
        expect(
            eq_options_set_input_shape(o, null(), 1, 4, 1, 1, 1),
            Status::NullPointer,
            "name",
        );
        eq_options_free(o);

        expect(
            eq_net_load(null(), c"x.bin".as_ptr(), null(), &mut out),
            Status::NullPointer,
            "param_path",
        );
        expect(
            eq_net_load(c"x.param".as_ptr(), null(), null(), &mut out),
            Status::NullPointer,
            "bin_path",
        );
        expect(
            eq_net_load(c"x.param".as_ptr(), c"x.bin".as_ptr(), null(), null_mut()),
            Status::NullPointer,
            "out",
        );
        expect(
            eq_net_load_memory(null(), 10, null(), 0, null(), &mut out),
            Status::NullPointer,
            "param",
        );
        expect(
            eq_net_load_memory(
                param.as_ptr().cast(),
                param.len(),
                null(),
                8,
                null(),
                &mut out,
            ),
            Status::NullPointer,
            "bin",
        );
        assert!(out.is_null());

        expect(eq_net_run(null_mut()), Status::NullPointer, "net");
        expect(
            eq_net_input_count(net, null_mut()),
            Status::NullPointer,
            "count",
        );
        expect(
            eq_net_input_count(null(), &mut 0),
            Status::NullPointer,
            "net",
        );
        expect(
            eq_net_input_name(net, 0, null_mut()),
            Status::NullPointer,
            "name",
        );
        expect(
            eq_net_output_name(null(), 0, &mut null()),
            Status::NullPointer,
            "net",
        );
        expect(
            eq_net_blob_shape(net, c"data".as_ptr(), null_mut()),
            Status::NullPointer,
            "shape",
        );
        expect(
            eq_net_set_input(net, null(), [1.0f32].as_ptr(), 1),
            Status::NullPointer,
            "name",
        );
        expect(
            eq_net_set_input(net, c"data".as_ptr(), null(), 4),
            Status::NullPointer,
            "data",
        );
        expect(
            eq_net_get_output(net, null(), null_mut(), 0, null_mut(), null_mut()),
            Status::NullPointer,
            "name",
        );
        expect(
            eq_net_get_output(net, c"prob".as_ptr(), null_mut(), 3, null_mut(), null_mut()),
            Status::NullPointer,
            "buffer",
        );
        // Freeing NULL is a no-op, as free(NULL).
        expect(eq_net_free(null_mut()), Status::Ok, "");
        expect(eq_options_free(null_mut()), Status::Ok, "");
    }
    eq_net_free(net);
}

#[test]
fn wrong_sizes_are_errors_with_the_required_size() {
    let net = loaded();
    expect(
        set_input(net, c"data", &[1.0; 3]),
        Status::Shape,
        "expects 4",
    );
    expect(set_input(net, c"data", &[1.0; 5]), Status::Shape, "got 5");
    expect(set_input(net, c"data", &[]), Status::Shape, "got 0");
    let x = [0.0f32; 4];
    let huge = unsafe { eq_net_set_input(net, c"data".as_ptr(), x.as_ptr(), usize::MAX) };
    expect(huge, Status::InvalidArgument, "impossibly large");

    // A size query (NULL buffer, capacity 0) works before any run.
    let (mut count, mut shape) = (0usize, EqShape::default());
    let status =
        unsafe { eq_net_get_output(net, c"prob".as_ptr(), null_mut(), 0, &mut count, &mut shape) };
    expect(status, Status::Ok, "");
    assert_eq!((count, shape.w), (3, 3));
    // Reading before a run is refused.
    expect(
        output(net, c"prob").0,
        Status::InvalidArgument,
        "eq_net_run",
    );

    expect(set_input(net, c"data", &[1.0; 4]), Status::Ok, "");
    expect(eq_net_run(net), Status::Ok, "");
    let mut small = [0.0f32; 2];
    count = 0;
    let status = unsafe {
        eq_net_get_output(
            net,
            c"prob".as_ptr(),
            small.as_mut_ptr(),
            small.len(),
            &mut count,
            null_mut(),
        )
    };
    expect(status, Status::BufferTooSmall, "3 values");
    assert_eq!(count, 3, "the required size is reported");
    assert_eq!(small, [0.0; 2], "nothing is written");
    // A new input invalidates the outputs until the next run.
    expect(set_input(net, c"data", &[2.0; 4]), Status::Ok, "");
    expect(
        output(net, c"prob").0,
        Status::InvalidArgument,
        "eq_net_run",
    );
    eq_net_free(net);
}

#[test]
fn unknown_and_misused_blob_names() {
    let net = loaded();
    expect(
        set_input(net, c"nope", &[1.0; 4]),
        Status::UnknownBlob,
        "`nope`",
    );
    expect(
        set_input(net, c"prob", &[1.0; 3]),
        Status::InvalidArgument,
        "not an input",
    );
    expect(set_input(net, c"data", &[1.0; 4]), Status::Ok, "");
    expect(eq_net_run(net), Status::Ok, "");
    expect(output(net, c"nope").0, Status::UnknownBlob, "`nope`");
    expect(
        output(net, c"fc").0,
        Status::InvalidArgument,
        "not an output",
    );
    expect(
        output(net, c"data").0,
        Status::InvalidArgument,
        "not an output",
    );
    eq_net_free(net);
}

#[test]
fn bad_utf8_is_an_error() {
    let net = loaded();
    let bad = [b'd', 0xff, b'a', 0];
    let bad = bad.as_ptr().cast::<c_char>();
    let x = [1.0f32; 4];
    unsafe {
        expect(
            eq_net_set_input(net, bad, x.as_ptr(), 4),
            Status::Utf8,
            "UTF-8",
        );
        let mut shape = EqShape::default();
        expect(
            eq_net_blob_shape(net, bad, &mut shape),
            Status::Utf8,
            "UTF-8",
        );
        let o = new_options();
        expect(eq_options_set_cluster(o, bad), Status::Utf8, "cluster");
        expect(
            eq_options_set_input_shape(o, bad, 1, 4, 1, 1, 1),
            Status::Utf8,
            "name",
        );
        eq_options_free(o);
        // A path with bad UTF-8 is an ordinary path on Unix: it just does not exist.
        let mut out = null_mut();
        expect(eq_net_load(bad, bad, null(), &mut out), Status::Io, "");
    }
    eq_net_free(net);
}

#[test]
fn freed_and_forged_handles_are_detected() {
    let net = loaded();
    expect(eq_net_free(net), Status::Ok, "");
    expect(eq_net_free(net), Status::InvalidHandle, "double free");
    expect(eq_net_run(net), Status::InvalidHandle, "not a live handle");
    expect(
        set_input(net, c"data", &[1.0; 4]),
        Status::InvalidHandle,
        "",
    );
    expect(output(net, c"prob").0, Status::InvalidHandle, "");

    let o = new_options();
    // An options handle is not a net, and the other way round.
    expect(eq_net_run(o.cast()), Status::InvalidHandle, "");
    expect(
        eq_options_set_threads(net.cast(), 1),
        Status::InvalidHandle,
        "",
    );
    expect(eq_options_free(o), Status::Ok, "");
    expect(eq_options_free(o), Status::InvalidHandle, "double free");
    expect(eq_options_set_threads(o, 2), Status::InvalidHandle, "");
    // Made-up values.
    expect(eq_net_run(handle(0x7)), Status::InvalidHandle, "");
    expect(eq_net_free(handle(usize::MAX)), Status::InvalidHandle, "");
    // Handles are never reused: a new net does not revive the old one.
    let again = loaded();
    assert_ne!(again, net);
    expect(eq_net_run(net), Status::InvalidHandle, "");
    eq_net_free(again);
}

#[test]
fn panics_become_codes_and_poison_the_net() {
    let net = loaded();
    INJECT_PANIC.with(|p| p.set(true));
    expect(eq_net_run(net), Status::Panic, "injected test panic");
    // The panic happened while the net was in use: it is refused from now on...
    expect(eq_net_run(net), Status::Panic, "free it");
    // ...but can still be freed.
    expect(eq_net_free(net), Status::Ok, "");

    // The guard itself, with other payloads.
    expect(
        guard(|| std::panic::panic_any(42u32)),
        Status::Panic,
        "unknown panic payload",
    );
    expect(
        guard(|| panic!("{}", String::from("formatted"))),
        Status::Panic,
        "formatted",
    );
    expect(guard(|| Ok(())), Status::Ok, "");
}

#[test]
fn last_error_is_per_call_and_per_thread() {
    expect(eq_net_run(null_mut()), Status::NullPointer, "net is NULL");
    // Another thread has its own (empty) message.
    let other = std::thread::spawn(last_error).join().unwrap();
    assert_eq!(other, "");
    assert_eq!(last_error(), "net is NULL");
    // Success clears it.
    let o = new_options();
    assert_eq!(last_error(), "");
    eq_options_free(o);
}

#[test]
fn status_strings_and_version() {
    for s in Status::ALL {
        let name = unsafe { CStr::from_ptr(eq_status_string(s as c_int)) };
        assert_eq!(name, s.name());
    }
    let unknown = unsafe { CStr::from_ptr(eq_status_string(-5)) };
    assert_eq!(unknown, c"EQ_ERR_UNKNOWN_STATUS");
    let v = unsafe { CStr::from_ptr(eq_version()) };
    assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
}

#[test]
fn options_validate_their_values() {
    let o = new_options();
    unsafe {
        expect(
            eq_options_set_threads(o, -1),
            Status::InvalidArgument,
            "negative",
        );
        expect(eq_options_set_threads(o, 2), Status::Ok, "");
        expect(
            eq_options_set_precision(o, 9),
            Status::InvalidArgument,
            "precision 9",
        );
        for p in [
            EQ_PRECISION_AUTO,
            EQ_PRECISION_FP32,
            EQ_PRECISION_INT8,
            EQ_PRECISION_INT7,
        ] {
            expect(eq_options_set_precision(o, p), Status::Ok, "");
        }
        expect(
            eq_options_set_cluster(o, c"fast".as_ptr()),
            Status::InvalidArgument,
            "unknown cpu selection",
        );
        expect(
            eq_options_set_cluster(o, c"cpus=0,0".as_ptr()),
            Status::InvalidArgument,
            "twice",
        );
        expect(
            eq_options_set_cluster(o, c"cpus=100000".as_ptr()),
            Status::InvalidArgument,
            "100000",
        );
        for name in [c"all", c"big", c"little", c"cpus=0"] {
            expect(eq_options_set_cluster(o, name.as_ptr()), Status::Ok, "");
        }
        expect(
            eq_options_set_cpus(o, [0, -1].as_ptr(), 2),
            Status::InvalidArgument,
            "negative",
        );
        expect(
            eq_options_set_cpus(o, [0, 0].as_ptr(), 2),
            Status::InvalidArgument,
            "twice",
        );
        expect(eq_options_set_cpus(o, [0].as_ptr(), 1), Status::Ok, "");
        let shape =
            |dims, w, h, d, c| eq_options_set_input_shape(o, c"data".as_ptr(), dims, w, h, d, c);
        expect(shape(0, 4, 1, 1, 1), Status::Shape, "dims");
        expect(shape(5, 4, 1, 1, 1), Status::Shape, "dims");
        expect(shape(1, 4, 2, 1, 1), Status::Shape, "unused");
        expect(shape(3, 4, 4, 2, 3), Status::Shape, "unused");
        expect(shape(1, -4, 1, 1, 1), Status::Shape, "negative");
        expect(shape(1, 0, 1, 1, 1), Status::Shape, "empty");
        expect(shape(4, 1 << 16, 1 << 16, 1, 1), Status::Shape, "exceeds");
        expect(shape(1, 4, 1, 1, 1), Status::Ok, "");
    }
    eq_options_free(o);
}

/// The model, but the Input layer declares no shape.
const PARAM_NO_SHAPE: &str = "7767517\n3 3\n\
    Input data 0 1 data\n\
    InnerProduct fc 1 1 data fc 0=3 1=1 2=12\n\
    Softmax prob 1 1 fc prob\n";

#[test]
fn options_apply_at_load() {
    let o = new_options();
    unsafe {
        // An input shape for a blob that is not an input.
        eq_options_set_input_shape(o, c"fc".as_ptr(), 1, 3, 1, 1, 1);
        let (status, net) = load(PARAM_NO_SHAPE, o);
        expect(status, Status::UnknownBlob, "`fc`");
        assert!(net.is_null());
        let o = new_options();
        // No shape anywhere: the net cannot plan.
        let (status, _) = load(PARAM_NO_SHAPE, o);
        assert_ne!(status, OK);
        assert!(!last_error().is_empty());

        expect(
            eq_options_set_input_shape(o, c"data".as_ptr(), 1, 4, 1, 1, 1),
            Status::Ok,
            "",
        );
        expect(eq_options_set_cluster(o, c"all".as_ptr()), Status::Ok, "");
        expect(
            eq_options_set_precision(o, EQ_PRECISION_FP32),
            Status::Ok,
            "",
        );
        let (status, net) = load(PARAM_NO_SHAPE, o);
        expect(status, Status::Ok, "");
        // The options can go; the net keeps its copy.
        eq_options_free(o);
        let x = [1.0f32, 2.0, 3.0, 4.0];
        expect(set_input(net, c"data", &x), Status::Ok, "");
        expect(eq_net_run(net), Status::Ok, "");
        let (_, got, _, _) = output(net, c"prob");
        for (g, e) in got.iter().zip(expected(&x)) {
            assert!((g - e).abs() < 1e-6, "{got:?}");
        }
        eq_net_free(net);
    }
}

#[test]
fn load_errors_have_codes() {
    // Malformed param text.
    let (status, net) = load("7767517\n3 3\nInput data 0 1\n", null());
    expect(status, Status::Parse, "");
    assert!(net.is_null());
    // Weights too short.
    let bin = bin();
    let mut net = null_mut();
    let status = unsafe {
        eq_net_load_memory(
            PARAM.as_ptr().cast(),
            PARAM.len(),
            bin.as_ptr().cast(),
            bin.len() - 8,
            null(),
            &mut net,
        )
    };
    expect(status, Status::Weights, "");
    // Unknown layer type.
    let (status, _) = load(
        "7767517\n2 2\nInput data 0 1 data 0=4\nNoSuchLayer x 1 1 data x\n",
        null(),
    );
    assert_ne!(status, OK);
    // Missing files.
    let status = unsafe {
        eq_net_load(
            c"/nonexistent/m.param".as_ptr(),
            c"/nonexistent/m.bin".as_ptr(),
            null(),
            &mut net,
        )
    };
    expect(status, Status::Io, "/nonexistent/m.param");
    assert!(net.is_null());
}

#[test]
fn loads_from_files() {
    let dir = std::env::temp_dir().join(format!("eq-capi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (param, binp) = (dir.join("m.param"), dir.join("m.bin"));
    std::fs::write(&param, PARAM).unwrap();
    std::fs::write(&binp, bin()).unwrap();
    let c = |p: &std::path::Path| CString::new(p.to_str().unwrap()).unwrap();
    let mut net = null_mut();
    let o = new_options();
    eq_options_set_threads(o, 2);
    let status = unsafe { eq_net_load(c(&param).as_ptr(), c(&binp).as_ptr(), o, &mut net) };
    expect(status, Status::Ok, "");
    eq_options_free(o);
    let x = [3.0f32, 1.0, -2.0, 0.0];
    expect(set_input(net, c"data", &x), Status::Ok, "");
    expect(eq_net_run(net), Status::Ok, "");
    let (_, got, _, _) = output(net, c"prob");
    for (g, e) in got.iter().zip(expected(&x)) {
        assert!((g - e).abs() < 1e-6, "{got:?}");
    }
    eq_net_free(net);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn one_net_from_several_threads_is_serialised() {
    let net = loaded() as usize;
    let workers: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let net: *mut EqNet = handle(net);
                for i in 0..50 {
                    let x = [t as f32, i as f32, 0.0, 1.0];
                    // Each call is atomic; the outputs of one thread's run may be replaced
                    // by another's before it reads them, so only statuses are checked.
                    let s = set_input(net, c"data", &x);
                    assert_eq!(s, OK);
                    let s = eq_net_run(net);
                    assert_eq!(s, OK);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    expect(eq_net_free(handle(net)), Status::Ok, "");
}
