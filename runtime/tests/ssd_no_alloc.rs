//! PriorBox + DetectionOutput inside a net: `run` performs no heap allocation and gives the
//! same detections every time.

use eq_runtime::ops::detection_output::detection_count;
use eq_runtime::rng::Rng;
use eq_runtime::{Net, Options};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn ssd_head_runs_without_allocating() {
    // 3x3 cells, 4 priors each (min, sqrt(min*max), ratio 2 and its flip): 36 priors.
    let param = "7767517\n6 6\n\
        Input feat 0 1 feat 0=3 1=3 2=4\n\
        Input image 0 1 image 0=30 1=30 2=3\n\
        Input loc 0 1 loc 0=144\n\
        Input conf 0 1 conf 0=4 1=36\n\
        PriorBox pb 2 1 feat image pb -23300=1,8.0 -23301=1,16.0 -23302=1,2.0 9=-233 10=-233 13=0.5\n\
        DetectionOutput det 3 1 loc conf pb out 0=4 1=0.45 2=20 3=10 4=0.3\n";
    let mut net = Net::from_memory(param.as_bytes(), &[], &Options::default()).unwrap();
    let mut rng = Rng::new(3);
    net.set_input("loc", &rng.vec(144, -1.0, 1.0)).unwrap();
    // Softmax-like rows: background low on a few priors so several classes pass.
    let mut conf = Vec::new();
    for _ in 0..36 {
        let row: Vec<f32> = (0..4).map(|_| rng.uniform(0.0, 1.0).powi(3)).collect();
        let sum: f32 = row.iter().sum();
        conf.extend(row.iter().map(|v| v / sum));
    }
    net.set_input("conf", &conf).unwrap();
    net.run().unwrap();
    let first = net.blob("out").unwrap().data.to_vec();

    let before = ALLOCATIONS.load(Ordering::Relaxed);
    net.run().unwrap();
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    assert_eq!(after - before, 0, "run allocated");

    let out = net.blob("out").unwrap();
    assert_eq!(out.data, &first[..]);
    let n = detection_count(&out);
    assert!(n > 0 && n <= 10, "{n} detections");
    // Best first, labels 1..=3, padding after.
    let rows: Vec<&[f32]> = out.data.chunks(6).collect();
    for w in rows[..n].windows(2) {
        assert!(w[0][1] >= w[1][1]);
    }
    assert!(rows[..n]
        .iter()
        .all(|r| (1.0..=3.0).contains(&r[0]) && r[1] > 0.3));
    assert!(rows[n..].iter().all(|r| r[0] == -1.0));
}
