//! The thread pool as nets use it: long runs, several nets (each with its own pool and CPU
//! list) at once, panics, CPU pinning, and outputs that do not depend on the thread count.

use eq_runtime::net::{Net, Options};
use eq_runtime::pool::Pool;
use eq_runtime::target::Target;
use eq_runtime::tensor::Shape;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

mod common;
use common::{run_once, small_weights, SMALL};

fn opts(threads: usize, cpus: &[usize]) -> Options {
    Options {
        threads,
        cpus: cpus.to_vec(),
        ..Options::default()
    }
}

fn cpu_count() -> usize {
    Target::detect().all_cpus().len()
}

#[test]
fn thousands_of_consecutive_runs_of_a_small_net() {
    let bin = small_weights(1);
    let mut single = Net::from_memory(SMALL.as_bytes(), &bin, &opts(1, &[])).unwrap();
    let want = run_once(&mut single, "data", 5);
    let mut net = Net::from_memory(SMALL.as_bytes(), &bin, &opts(3, &[])).unwrap();
    for i in 0..3000 {
        // Pauses now and then let the workers park, so wake-ups are exercised too.
        if i % 1000 == 999 {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(run_once(&mut net, "data", 5), want, "run {i}");
    }
}

#[test]
fn several_nets_with_their_own_pools_run_concurrently() {
    let cpus = cpu_count();
    let bin = small_weights(2);
    let mut single = Net::from_memory(SMALL.as_bytes(), &bin, &opts(1, &[])).unwrap();
    let want: Vec<Vec<f32>> = (0..4).map(|s| run_once(&mut single, "data", s)).collect();
    std::thread::scope(|scope| {
        for n in 0..4usize {
            let (bin, want) = (&bin, &want);
            scope.spawn(move || {
                // Each net its own CPU list (the same CPUs when there are few).
                let list = [n % cpus, (n + 1) % cpus];
                let mut net =
                    Net::from_memory(SMALL.as_bytes(), bin, &opts(1 + n % 3, &list)).unwrap();
                for i in 0..300 {
                    let seed = (i % 4) as u64;
                    assert_eq!(run_once(&mut net, "data", seed), want[seed as usize]);
                }
            });
        }
    });
}

#[test]
fn a_panicking_task_is_an_error_and_the_pool_stays_usable() {
    for threads in 1..=3 {
        let pool = Pool::new(threads).unwrap();
        for round in 0..3 {
            let e = pool
                .run(32, &|t, _| assert!(t != 17, "task 17 failed"))
                .unwrap_err();
            assert!(e.to_string().contains("task 17 failed"), "{e}");
            let done = AtomicUsize::new(0);
            pool.run(32, &|_, _| {
                done.fetch_add(1, Ordering::Relaxed);
            })
            .unwrap();
            assert_eq!(
                done.load(Ordering::Relaxed),
                32,
                "threads {threads} round {round}"
            );
        }
    }
}

/// `Cpus_allowed_list` of the calling thread (what sched_getaffinity reports).
fn my_affinity() -> Vec<usize> {
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap();
    eq_runtime::cpu::parse_cpu_list(line).unwrap()
}

/// Each worker's affinity, read from inside a task that every worker runs: every task waits
/// until all workers have arrived, so no worker can take two.
fn worker_affinities(pool: &Pool) -> Vec<Vec<usize>> {
    let threads = pool.threads();
    let seen: Mutex<Vec<Option<Vec<usize>>>> = Mutex::new(vec![None; threads]);
    let arrived = AtomicUsize::new(0);
    pool.run(threads, &|_, worker| {
        seen.lock().unwrap()[worker] = Some(my_affinity());
        arrived.fetch_add(1, Ordering::AcqRel);
        let start = Instant::now();
        while arrived.load(Ordering::Acquire) < threads {
            assert!(start.elapsed() < Duration::from_secs(20), "workers missing");
            std::thread::yield_now();
        }
    })
    .unwrap();
    seen.into_inner()
        .unwrap()
        .into_iter()
        .map(|a| a.expect("every worker ran a task"))
        .collect()
}

#[test]
fn workers_are_pinned_to_the_listed_cpus() {
    if !std::path::Path::new("/proc/thread-self/status").exists() {
        eprintln!("skipping: no /proc/thread-self");
        return;
    }
    let all = Target::detect().all_cpus();
    let allowed = my_affinity();
    let usable: Vec<usize> = all.into_iter().filter(|c| allowed.contains(c)).collect();
    if usable.len() < 2 {
        eprintln!("skipping: fewer than 2 usable cpus");
        return;
    }
    let list = [usable[1], usable[0]];
    // Worker i (i >= 1) goes to list[i % 2]: workers 1, 2, 3 on list[1], list[0], list[1].
    let pool = Pool::with_cpus(4, &list).unwrap();
    let got = worker_affinities(&pool);
    for (w, cpus) in got.iter().enumerate().skip(1) {
        assert_eq!(cpus, &vec![list[w % 2]], "worker {w}");
    }
    // Worker 0 is the caller, which the pool leaves alone.
    assert_eq!(got[0], allowed);
    // An unpinned pool's workers keep the process's CPUs.
    let free = worker_affinities(&Pool::new(3).unwrap());
    assert!(free.iter().all(|a| a == &allowed), "{free:?}");
}

#[test]
fn the_cpu_list_comes_from_sysfs_not_from_the_callers_affinity() {
    // core_affinity::get_core_ids() only lists the CPUs the calling thread may run on, so it
    // shrinks once the caller is pinned; targets and selections must not depend on it.
    let before = Target::detect().all_cpus();
    let after = std::thread::spawn(move || {
        core_affinity::set_for_current(core_affinity::CoreId { id: before[0] });
        Target::detect().all_cpus()
    })
    .join()
    .unwrap();
    assert_eq!(after, Target::detect().all_cpus());
}

fn shared(rel: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("EQ_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
    let path = dir.join(rel);
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{} is missing (CI=true: shared data is required)",
        path.display()
    );
    eprintln!("skipping: {} not found", path.display());
    None
}

/// Real models with their trained weights, and benchmark models with zero weights.
const MODELS: &[(&str, Option<&str>, &str, usize)] = &[
    (
        "data/models/squeezenet_v1.1/squeezenet_v1.1.param",
        Some("data/models/squeezenet_v1.1/squeezenet_v1.1.fp32.bin"),
        "data",
        227,
    ),
    (
        "data/models/mobilenet_v2/mobilenet_v2.param",
        Some("data/models/mobilenet_v2/mobilenet_v2.fp32.bin"),
        "in0",
        224,
    ),
    ("models/ncnn-benchmark/resnet18.param", None, "data", 224),
    ("models/ncnn-benchmark/mobilenet.param", None, "data", 224),
];

#[test]
fn outputs_do_not_depend_on_the_thread_count() {
    for &(param, bin, input, size) in MODELS {
        let Some(param) = shared(param) else {
            continue;
        };
        let bin = match bin.map(shared) {
            Some(None) => continue,
            other => other.flatten(),
        };
        let load = |threads: usize| {
            let mut o = opts(threads, &[]);
            o.input_shapes = vec![(input.to_string(), Shape::d3(size, size, 3))];
            match &bin {
                Some(b) => Net::load(&param, b, &o),
                None => Net::load_zero_weights(&param, &o),
            }
            .unwrap_or_else(|e| panic!("{}: {e}", param.display()))
        };
        let want = run_once(&mut load(1), input, 11);
        for threads in 2..=4 {
            let got = run_once(&mut load(threads), input, 11);
            assert!(
                got == want,
                "{}: {threads} threads differ from 1",
                param.display()
            );
        }
    }
}

#[test]
fn worker_statistics_count_every_task_while_on() {
    let pool = Pool::new(3).unwrap();
    let work = |_t: usize, _w: usize| {
        std::hint::black_box((0..2000).sum::<u64>());
    };
    pool.run(50, &work).unwrap();
    let (per, wall) = pool.stats();
    assert!(
        per.iter().all(|&(_, tasks, _)| tasks == 0),
        "off by default"
    );
    assert_eq!(wall, std::time::Duration::ZERO);
    pool.set_stats(true);
    for _ in 0..4 {
        pool.run(50, &work).unwrap();
    }
    pool.run(1, &work).unwrap();
    let (per, wall) = pool.stats();
    assert_eq!(per.len(), 3);
    assert_eq!(per.iter().map(|&(_, t, _)| t).sum::<u64>(), 4 * 50 + 1);
    let busy: std::time::Duration = per.iter().map(|&(_, _, b)| b).sum();
    assert!(busy > std::time::Duration::ZERO && wall > std::time::Duration::ZERO);
    // Off again: nothing more is counted; on again: cleared.
    pool.set_stats(false);
    pool.run(50, &work).unwrap();
    assert_eq!(pool.stats().0.iter().map(|&(_, t, _)| t).sum::<u64>(), 201);
    pool.set_stats(true);
    assert_eq!(pool.stats().0.iter().map(|&(_, t, _)| t).sum::<u64>(), 0);
}
