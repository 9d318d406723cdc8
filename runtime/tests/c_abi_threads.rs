//! Set input / run / get output through the C ABI allocate nothing on 1, 2 and 4 threads,
//! counting every thread of the process (the net's pool workers sit behind the opaque
//! handle, so they cannot be marked): this binary holds this one test only.

mod common;
use common::{count_all_threads, small_weights, CNet, SMALL};

#[test]
fn the_c_abi_runs_without_allocating_on_1_2_and_4_threads() {
    // The counter sees allocations of other threads (as a pool worker's would be).
    let (_, seen) = count_all_threads(|| std::thread::spawn(|| vec![1u8; 64].len()).join());
    assert!(seen > 0, "an allocation on another thread went uncounted");
    let bin = small_weights(3);
    let input: Vec<f32> = (0..8 * 8 * 3)
        .map(|i| (i % 17) as f32 * 0.1 - 0.8)
        .collect();
    let mut reference = [0.0f32; 10];
    for threads in [1, 2, 4] {
        let mut net = CNet::load(SMALL, &bin, threads);
        let mut out = [0.0f32; 10];
        net.run(c"data", &input, c"out", &mut out); // first use of this thread's error slot
        let ((), allocations) = count_all_threads(|| {
            for _ in 0..20 {
                net.run(c"data", &input, c"out", &mut out);
            }
        });
        assert_eq!(allocations, 0, "{threads} thread(s)");
        if threads == 1 {
            reference = out;
        }
        assert_eq!(out, reference, "{threads} threads against 1");
    }
}
