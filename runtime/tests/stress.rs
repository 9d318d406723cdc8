//! Many nets on many threads at once, loaded, run and freed over and over, through the Rust
//! API and the C ABI, on 1-4 pool threads each: every output equals the single-threaded one
//! bit for bit, and when all are freed no worker thread is left. One test in this binary, so
//! the thread count of the process is its own.

use eq_runtime::net::{Net, Options};
use eq_runtime::rng::Rng;
use std::time::{Duration, Instant};

mod common;
use common::{run_once, small_weights, CNet, SMALL};

/// Threads of this process (Linux); None elsewhere.
fn task_count() -> Option<usize> {
    Some(std::fs::read_dir("/proc/self/task").ok()?.count())
}

#[test]
fn many_nets_on_many_threads_load_run_and_free_concurrently() {
    const CALLERS: usize = 8;
    const ROUNDS: usize = 16;
    const RUNS: u64 = 40;
    let before = task_count();
    let bin = small_weights(4);
    let single = Options {
        threads: 1,
        ..Options::default()
    };
    let mut reference = Net::from_memory(SMALL.as_bytes(), &bin, &single).unwrap();
    let want: Vec<Vec<f32>> = (0..4)
        .map(|s| run_once(&mut reference, "data", s))
        .collect();
    drop(reference);

    std::thread::scope(|scope| {
        for caller in 0..CALLERS {
            let (bin, want) = (&bin, &want);
            scope.spawn(move || {
                for round in 0..ROUNDS {
                    let threads = 1 + (caller + round) % 4;
                    if (caller + round) % 2 == 0 {
                        let opts = Options {
                            threads,
                            ..Options::default()
                        };
                        let mut net = Net::from_memory(SMALL.as_bytes(), bin, &opts).unwrap();
                        for i in 0..RUNS {
                            let got = run_once(&mut net, "data", i % 4);
                            assert_eq!(got, want[(i % 4) as usize], "caller {caller} run {i}");
                        }
                    } else {
                        let mut net = CNet::load(SMALL, bin, threads as i32);
                        let mut out = [0.0f32; 10];
                        for i in 0..RUNS {
                            // The same input as run_once's.
                            let input = Rng::new(i % 4).vec(8 * 8 * 3, -1.0, 1.0);
                            net.run(c"data", &input, c"out", &mut out);
                            assert_eq!(
                                out[..],
                                want[(i % 4) as usize],
                                "caller {caller} C run {i}"
                            );
                        }
                    }
                }
            });
        }
    });

    // Every pool was joined when its net was freed (exited threads may linger in /proc for
    // a moment, longer under qemu-user).
    if let Some(before) = before {
        let deadline = Instant::now() + Duration::from_secs(2);
        while task_count() != Some(before) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            task_count(),
            Some(before),
            "threads left after every net was freed"
        );
    }
}
