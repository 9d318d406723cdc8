//! A small net through the planner made only of this branch's layers: in-place layers
//! (BinaryOp with a scalar, Sigmoid, BatchNorm, Softmax), aliases (Split, Flatten, Reshape)
//! and new-buffer layers (Pooling, Concat), checked against values computed by hand and for
//! zero heap allocations during `run`.

use eq_runtime::{Net, Options};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Counts allocations made by the current thread while counting is switched on.
struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // try_with: thread-locals may be gone while a thread shuts down.
        let _ = COUNTING.try_with(|c| {
            if c.get() {
                ALLOCS.with(|a| a.set(a.get() + 1));
            }
        });
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const PARAM: &str = "7767517
12 13
Input     data  0 1 data 0=4 1=4 2=2
BinaryOp  sub   1 1 data d_sub 0=1 1=1 2=1.0
Split     split 1 2 d_sub s0 s1
Pooling   pool  1 1 s0 p 0=0 1=2 2=2
Sigmoid   sig   1 1 s1 sg
Pooling   gpool 1 1 sg gp 0=1 4=1
BatchNorm bn    1 1 gp gpb 0=2 1=1.0
Flatten   flat  1 1 p pf
Concat    cat   2 1 pf gpb c 0=0
Reshape   rs    1 1 c r 0=5 1=-1
Softmax   sm    1 1 r sm_out 0=1 1=1
Dropout   drop  1 1 sm_out out
";

fn weights() -> Vec<u8> {
    // BatchNorm slope, mean, var, bias for 2 channels.
    let v: [f32; 8] = [2.0, 1.0, 0.0, 0.5, 3.0, 0.0, 1.0, 0.0];
    v.iter().flat_map(|f| f.to_le_bytes()).collect()
}

fn expected() -> Vec<f32> {
    let x: Vec<f64> = (0..32).map(|i| i as f64 - 1.0).collect();
    // 2x2 max pooling, stride 2, of two 4x4 channels.
    let mut row = Vec::new();
    for q in 0..2 {
        for oy in 0..2 {
            for ox in 0..2 {
                let at = |y: usize, xx: usize| x[q * 16 + (2 * oy + y) * 4 + 2 * ox + xx];
                row.push(at(0, 0).max(at(0, 1)).max(at(1, 0)).max(at(1, 1)));
            }
        }
    }
    // Global average of the sigmoid, then BatchNorm: ch0 b=1 a=1, ch1 b=1 a=-0.5.
    let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
    let g0: f64 = x[..16].iter().map(|&v| sig(v)).sum::<f64>() / 16.0;
    let g1: f64 = x[16..].iter().map(|&v| sig(v)).sum::<f64>() / 16.0;
    row.push(g0 + 1.0);
    row.push(g1 - 0.5);
    // Softmax over rows of 5.
    let mut out = Vec::new();
    for r in row.chunks(5) {
        let m = r.iter().cloned().fold(f64::MIN, f64::max);
        let s: f64 = r.iter().map(|v| (v - m).exp()).sum();
        out.extend(r.iter().map(|v| ((v - m).exp() / s) as f32));
    }
    out
}

#[test]
fn small_net_matches_hand_computation_without_allocating() {
    let opts = Options {
        threads: 2,
        ..Options::default()
    };
    let mut net = Net::from_memory(PARAM.as_bytes(), &weights(), &opts).unwrap();
    let input: Vec<f32> = (0..32).map(|i| i as f32).collect();
    net.set_input("data", &input).unwrap();

    COUNTING.with(|c| c.set(true));
    let result = net.run();
    COUNTING.with(|c| c.set(false));
    result.unwrap();
    assert_eq!(ALLOCS.with(|a| a.get()), 0, "run() allocated");

    let out = net.blob("out").unwrap();
    assert_eq!(out.shape, eq_runtime::Shape::d2(5, 2));
    let want = expected();
    for (g, w) in out.data.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-6, "got {:?}\nwant {want:?}", out.data);
    }
    // A second run with the input written again gives the same result.
    let first = out.data.to_vec();
    net.set_input("data", &input).unwrap();
    net.run().unwrap();
    assert_eq!(net.blob("out").unwrap().data, &first[..]);
}

#[test]
fn load_errors_name_the_layer() {
    let bad = PARAM.replace(
        "Softmax   sm    1 1 r sm_out 0=1 1=1",
        "Softmax   sm    1 1 r sm_out 0=1",
    );
    let e = Net::from_memory(bad.as_bytes(), &weights(), &Options::default()).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("`sm`") && msg.contains("param is too old"),
        "{msg}"
    );
    let bad = PARAM.replace("0=5 1=-1", "0=3 1=-1");
    let e = Net::from_memory(bad.as_bytes(), &weights(), &Options::default()).unwrap_err();
    assert!(e.to_string().contains("`rs`"), "{e}");
    // Truncated BatchNorm weights.
    let e = Net::from_memory(PARAM.as_bytes(), &weights()[..28], &Options::default()).unwrap_err();
    assert!(e.to_string().contains("bn"), "{e}");
}

const PARAM_MORE: &str = "7767517
16 22
Input     data  0 1 data 0=3 1=2 2=4
Split     split 1 6 data a b c d e f
Permute   perm  1 1 a pa 0=5
LRN       lrn   1 1 b lb 1=3 2=1.000000e-01
LRN       lrn2  1 1 c lc 0=1 1=3
Eltwise   el    2 1 lb lc le 0=1 -23301=2,1.0,-1.0
BinaryOp  add   2 1 le d ad 0=0
Clip      clip  1 1 ad cl 0=-1.0 1=1.0
PReLU     pr    1 1 cl prl 0=4
Normalize nm    1 1 prl nml 0=0 1=0 3=4 4=1 2=1e-6
Scale     sc    1 1 nml scl 0=4 1=1
Pooling   gp    1 1 f gpf 0=1 4=1
Split     s2    1 2 gpf gpf0 gpf1
BinaryOp  mul   2 1 scl gpf0 m 0=2
Scale     sc2   2 1 m gpf1 out2 0=-233
Noop      noop  1 1 e en
";

#[test]
fn more_layers_run_without_allocating() {
    let w: Vec<u8> = (0..16)
        .flat_map(|i| (0.25 * i as f32).to_le_bytes())
        .collect();
    let mut net = Net::from_memory(PARAM_MORE.as_bytes(), &w, &Options::default()).unwrap();
    let input: Vec<f32> = (0..24).map(|i| (i as f32 * 0.7).sin()).collect();
    net.set_input("data", &input).unwrap();
    COUNTING.with(|c| c.set(true));
    let result = net.run();
    COUNTING.with(|c| c.set(false));
    result.unwrap();
    assert_eq!(ALLOCS.with(|a| a.get()), 0, "run() allocated");
    use eq_runtime::Shape;
    assert_eq!(net.blob("pa").unwrap().shape, Shape::d3(4, 2, 3));
    assert_eq!(net.blob("out2").unwrap().shape, Shape::d3(3, 2, 4));
    let en = net.blob("en").unwrap();
    assert_eq!(en.data, &input[..]);
    // Permute order 5 (c h w): out[w][h][c] = in[c][h][w].
    let pa = net.blob("pa").unwrap();
    assert_eq!(pa.data[1], input[6]);
    assert!(net.blob("out2").unwrap().data.iter().all(|v| v.is_finite()));
}
