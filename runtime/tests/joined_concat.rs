//! Concats along the outermost axis are planned without a step: their inputs' producers
//! write into the output. Checked on a graph with one concat that qualifies and three that
//! do not (its input made by such a concat, a misaligned part, an inner axis), against
//! values computed by hand, with and without keeping every blob.

use eq_runtime::ops::Storage;
use eq_runtime::plan::check_no_overlap;
use eq_runtime::{Net, Options};

const PARAM: &str = "7767517
13 19
Input     data  0 1 data 0=8 1=8 2=2
Split     split 1 5 data s0 s1 s2 s3 s4
Pooling   pa    1 1 s0 a 0=0 1=2 2=2
Pooling   pb    1 1 s1 b 0=1 1=2 2=2
Concat    cat   2 1 a b c 0=0
Pooling   pd    1 1 s2 d 0=0 1=2 2=2
Concat    cat2  2 1 c d e 0=0
Sigmoid   sig   1 1 e out
Pooling   pq    1 1 s3 q 0=0 1=4 2=4
Pooling   pr    1 1 s4 r 0=1 1=4 2=4
Concat    cat3  2 1 q r qr 0=0
Split     s5    1 2 qr qr0 qr1
Concat    cat4  2 1 qr0 qr1 h 0=1
";

/// `k x k` pooling with stride `k` of the 2 x 8 x 8 input, max or average.
fn pool(x: &[f32], k: usize, max: bool) -> Vec<f32> {
    let o = 8 / k;
    let mut out = Vec::new();
    for c in 0..2 {
        for oy in 0..o {
            for ox in 0..o {
                let window = (0..k * k).map(|i| x[c * 64 + (oy * k + i / k) * 8 + ox * k + i % k]);
                out.push(if max {
                    window.fold(f32::MIN, f32::max)
                } else {
                    window.sum::<f32>() / (k * k) as f32
                });
            }
        }
    }
    out
}

fn concat(a: &[f32], b: &[f32]) -> Vec<f32> {
    [a, b].concat()
}

fn storage_of(net: &Net, layer: &str) -> Storage {
    let g = net.graph();
    let li = g.layers.iter().position(|l| l.name == layer).unwrap();
    net.plan()
        .steps
        .iter()
        .find(|s| s.layer == li)
        .unwrap()
        .storage
}

fn place(net: &Net, blob: &str) -> usize {
    net.plan().place(net.graph().blob_id(blob).unwrap()).0
}

#[test]
fn outer_axis_concat_runs_in_its_producers() {
    let x: Vec<f32> = (0..128)
        .map(|i| ((i * 37 % 101) as f32 * 0.13).sin())
        .collect();
    let (a, b, d) = (pool(&x, 2, true), pool(&x, 2, false), pool(&x, 2, true));
    let c = concat(&a, &b);
    let e = concat(&c, &d);
    let out: Vec<f32> = e.iter().map(|v| 1.0 / (1.0 + (-v).exp())).collect();
    let qr = concat(&pool(&x, 4, true), &pool(&x, 4, false));
    // Along h: each channel's rows of qr, then the same rows again.
    let (ch, rows) = (4, qr.len() / 4);
    let h: Vec<f32> = (0..ch)
        .flat_map(|q| [&qr[q * rows..(q + 1) * rows], &qr[q * rows..(q + 1) * rows]].concat())
        .collect();
    for keep_all_blobs in [false, true] {
        for threads in [1, 2] {
            let opts = Options {
                threads,
                keep_all_blobs,
                ..Options::default()
            };
            let mut net = Net::from_memory(PARAM.as_bytes(), &[], &opts).unwrap();
            assert_eq!(storage_of(&net, "cat"), Storage::Alias, "cat is joined");
            for layer in ["cat2", "cat3", "cat4"] {
                assert_eq!(storage_of(&net, layer), Storage::New, "{layer} runs");
            }
            assert_eq!(place(&net, "a"), place(&net, "c"));
            assert_eq!(place(&net, "b"), place(&net, "c") + a.len());
            check_no_overlap(net.plan()).unwrap();
            net.set_input("data", &x).unwrap();
            net.run().unwrap();
            assert_eq!(net.blob("out").unwrap().data, &out[..]);
            assert_eq!(net.blob("h").unwrap().data, &h[..]);
            if keep_all_blobs {
                assert_eq!(net.blob("c").unwrap().data, &c[..]);
                assert_eq!(net.blob("e").unwrap().data, &e[..]);
            }
        }
    }
}
