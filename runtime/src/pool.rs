//! The fixed thread pool that runs one layer's tiles in parallel.
//!
//! Workers are created once per `Net` and live until it is dropped. The calling thread takes
//! part as worker 0. Between jobs a worker spins for a short while (the next layer usually
//! arrives within microseconds) and then parks, so an idle pool costs no CPU. Dispatching a
//! job allocates nothing: the job is a borrowed closure published through atomics.

use crate::cpu::{self, CoreKind};
use crate::error::{Error, Result};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

/// How long an idle worker stays awake (spinning, then yielding) before parking.
const SPIN: Duration = Duration::from_millis(2);
/// Busy-wait rounds before a waiting thread of an oversubscribed pool starts yielding its
/// core: with more threads than cores, pure spinning would hold the core that the awaited
/// thread needs.
const PURE_SPINS: u32 = 200;
/// How long a waiting thread of a pool with a core per thread busy-waits before it yields.
/// Long enough to cover a layer's hand-over (the threads of one layer finish within
/// microseconds of each other): a yield hands the core to any other runnable process, even a
/// `nice 19` one, for a whole time slice, which stalled every hand-over on a loaded machine.
/// Short enough that several nets running at once (each pool sure of its cores) lose little
/// to each other's spinning: a 2 ms spin made a test suite of concurrent nets 4x slower.
const PURE_SPIN_TIME: Duration = Duration::from_micros(100);

/// One step of waiting; reports whether the stay-awake window is over. It busy-waits for
/// [`PURE_SPINS`] rounds, or [`PURE_SPIN_TIME`] with a core per thread (`spin`), then yields
/// at every step.
fn wait_step(round: &mut u32, start: Instant, spin: bool) -> bool {
    *round += 1;
    if *round < PURE_SPINS
        || (spin && (!round.is_multiple_of(64) || start.elapsed() < PURE_SPIN_TIME))
    {
        std::hint::spin_loop();
        return false;
    }
    std::thread::yield_now();
    start.elapsed() >= SPIN
}

type Job = dyn Fn(usize, usize) + Sync;

struct Shared {
    /// Bumped once per job; workers run a job when they see a new value.
    epoch: AtomicUsize,
    /// The current job, valid while `run` has not returned (it waits for every worker).
    job: UnsafeCell<Option<*const Job>>,
    tasks: AtomicUsize,
    next: AtomicUsize,
    /// Workers (not counting the caller) that finished the current job.
    finished: AtomicUsize,
    panic: Mutex<Option<String>>,
    panicked: AtomicBool,
    shutdown: AtomicBool,
    /// Per-worker task counts and busy time, kept only while `stats_on` (see `Pool::stats`).
    stats_on: AtomicBool,
    stats: Vec<(AtomicU64, AtomicU64)>,
    /// Wall time of the jobs run while `stats_on`, in nanoseconds.
    jobs_ns: AtomicU64,
    /// Workers that are set up (started, pinned) and in their loop.
    started: AtomicUsize,
    /// Every thread has a core of its own (see `wait_step`).
    spin: bool,
}

// SAFETY: `job` is written only by `run` before the epoch is published (Release) and read by
// workers after they observe it (Acquire); `run` does not return while any worker may use it.
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

pub struct Pool {
    shared: Arc<Shared>,
    workers: Vec<(JoinHandle<()>, Thread)>,
    /// Serialises `run` calls from several threads on one pool.
    busy: Mutex<()>,
    /// The core type each worker runs on, for kernels scheduled per core (A53 / A72).
    cores: Vec<CoreKind>,
    /// L2 size of the CPUs the pool runs on (the smallest when they differ), for tiling.
    l2_bytes: Option<usize>,
}

impl Pool {
    /// A pool of `threads` workers (at least 1) with no CPU pinning.
    pub fn new(threads: usize) -> Result<Pool> {
        Pool::with_cpus(threads, &[])
    }

    /// A pool whose extra worker `i` (1-based) is pinned to `cpus[i % cpus.len()]`;
    /// an empty list pins nothing.
    pub fn with_cpus(threads: usize, cpus: &[usize]) -> Result<Pool> {
        if threads > MAX_THREADS {
            return Err(Error::Input {
                msg: format!("{threads} threads requested; at most {MAX_THREADS}"),
            });
        }
        let threads = threads.max(1);
        let cores_available = if cpus.is_empty() {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            let mut distinct = cpus.to_vec();
            distinct.sort_unstable();
            distinct.dedup();
            distinct.len()
        };
        let shared = Arc::new(Shared {
            epoch: AtomicUsize::new(0),
            job: UnsafeCell::new(None),
            tasks: AtomicUsize::new(0),
            next: AtomicUsize::new(0),
            finished: AtomicUsize::new(0),
            panic: Mutex::new(None),
            panicked: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            stats_on: AtomicBool::new(false),
            stats: (0..threads)
                .map(|_| (AtomicU64::new(0), AtomicU64::new(0)))
                .collect(),
            jobs_ns: AtomicU64::new(0),
            started: AtomicUsize::new(0),
            spin: threads <= cores_available,
        });
        let known = cpu::detect();
        let cores = worker_cores(threads, cpus, &known);
        let l2_bytes = smallest_l2(cpus, &known);
        let mut workers = Vec::with_capacity(threads - 1);
        for w in 1..threads {
            let s = Arc::clone(&shared);
            let cpu = (!cpus.is_empty()).then(|| cpus[w % cpus.len()]);
            let spawned = spawn_worker(w, move || {
                if let Some(id) = cpu {
                    core_affinity::set_for_current(core_affinity::CoreId { id });
                }
                s.started.fetch_add(1, Ordering::Release);
                worker_loop(&s, w)
            });
            match spawned {
                Ok(handle) => {
                    let thread = handle.thread().clone();
                    workers.push((handle, thread));
                }
                Err(e) => {
                    // Stop the workers already started: nothing may outlive a failed pool.
                    shut_down(&shared, &mut workers);
                    return Err(Error::Io {
                        path: "thread pool".into(),
                        msg: format!("cannot start worker {w} of {threads}: {e}"),
                    });
                }
            }
        }
        // A pool is ready when every worker is: thread start-up (which may allocate, and
        // under emulation can lag far behind) and pinning are done before the first job, so
        // nothing of it happens during an inference.
        while shared.started.load(Ordering::Acquire) < threads - 1 {
            std::thread::yield_now();
        }
        Ok(Pool {
            shared,
            workers,
            busy: Mutex::new(()),
            cores,
            l2_bytes,
        })
    }

    /// Uses `l2_bytes` (e.g. from a target file) when sysfs did not report the L2 size.
    pub fn or_l2_bytes(mut self, l2_bytes: Option<usize>) -> Pool {
        self.l2_bytes = self.l2_bytes.or(l2_bytes);
        self
    }

    /// L2 size of the pool's CPUs (the smallest if they differ), if known.
    pub fn l2_bytes(&self) -> Option<usize> {
        self.l2_bytes
    }

    /// The core type worker `worker` runs on (`EQ_CPU_KIND` overrides it, for qemu).
    pub fn core_kind(&self, worker: usize) -> CoreKind {
        self.cores.get(worker).copied().unwrap_or(CoreKind::Other)
    }

    /// Tasks per worker for work cut into equal, dynamically claimed tasks on a pool that
    /// mixes core types. With few tasks the last ones are what the slow cores end on: 4 per
    /// worker left the modeled RK3399 layer (4 A53 + 2 A72, the A72 1.6x as fast) 1.20x its
    /// ideal time, as long as a static split; 16 keep it within 1.06x for any speed ratio
    /// from 1 to 2.5 (`scripts/work_split.py`).
    pub const TASKS_PER_MIXED_WORKER: usize = 16;

    /// How many tasks to cut a job of many small, even pieces (channels of a depthwise
    /// layer) into: enough per worker for dynamic balancing (more on mixed clusters, where
    /// the faster cores claim more), few enough that a task is much more than claiming it
    /// (one task per 14x14 channel made 2 threads no faster than one).
    pub fn tasks_for_even_work(&self) -> usize {
        match self.threads() {
            1 => 1,
            t if self.mixed_cores() => t * Self::TASKS_PER_MIXED_WORKER,
            t => t * 4,
        }
    }

    /// Runs `f(item, worker)` for every item in `0..items`, the items cut into
    /// [`Pool::tasks_for_even_work`] tasks of consecutive items.
    pub fn run_items(&self, items: usize, f: &(dyn Fn(usize, usize) + Sync)) -> Result<()> {
        let per_task = items.div_ceil(self.tasks_for_even_work()).max(1);
        self.run(items.div_ceil(per_task), &|task, worker| {
            for item in task * per_task..items.min((task + 1) * per_task) {
                f(item, worker);
            }
        })
    }

    /// Whether the workers run on different core types (e.g. `--cluster all` on RK3399).
    /// Work is not split by a static speed ratio: tasks are claimed dynamically, so kernels
    /// that see mixed cores cut their work into more, smaller tasks and the faster cores
    /// simply claim more of them. That measures each layer's real speed ratio (memory-bound
    /// layers differ from compute-bound ones) with no calibration and no tuning constants.
    pub fn mixed_cores(&self) -> bool {
        self.cores.windows(2).any(|w| w[0] != w[1])
    }

    /// Pretends the workers run on `cores` (tests of the mixed-cluster split).
    #[cfg(test)]
    pub(crate) fn set_cores_for_test(&mut self, cores: Vec<CoreKind>) {
        self.cores = cores;
    }

    /// Starts (clearing them) or stops keeping per-worker statistics: how many tasks each
    /// worker ran and how long they took, against the jobs' wall time. Costs two clock reads
    /// per task while on.
    pub fn set_stats(&self, on: bool) {
        let s = &*self.shared;
        if on {
            for (tasks, busy) in &s.stats {
                tasks.store(0, Ordering::Relaxed);
                busy.store(0, Ordering::Relaxed);
            }
            s.jobs_ns.store(0, Ordering::Relaxed);
        }
        s.stats_on.store(on, Ordering::Release);
    }

    /// Per worker (core type, tasks run, busy time), and the wall time of the jobs, since
    /// `set_stats(true)`.
    pub fn stats(&self) -> (Vec<(CoreKind, u64, Duration)>, Duration) {
        let s = &*self.shared;
        let per = s
            .stats
            .iter()
            .enumerate()
            .map(|(w, (tasks, busy))| {
                (
                    self.core_kind(w),
                    tasks.load(Ordering::Relaxed),
                    Duration::from_nanos(busy.load(Ordering::Relaxed)),
                )
            })
            .collect();
        (per, Duration::from_nanos(s.jobs_ns.load(Ordering::Relaxed)))
    }

    /// Number of workers; task closures receive a worker index below this.
    pub fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Runs `f(task, worker)` for every task in `0..tasks` and returns when all are done.
    /// Each worker index is used by one thread at a time, so per-worker scratch indexed by it
    /// is never shared. A panicking task becomes an error and the pool stays usable.
    pub fn run(&self, tasks: usize, f: &(dyn Fn(usize, usize) + Sync)) -> Result<()> {
        if tasks == 0 {
            return Ok(());
        }
        let stats = self.shared.stats_on.load(Ordering::Acquire);
        let job_start = stats.then(Instant::now);
        if self.workers.is_empty() || tasks == 1 {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                (0..tasks).for_each(|t| f(t, 0))
            }))
            .map_err(|p| Error::Panic {
                msg: panic_message(&*p),
            });
            if let Some(t0) = job_start {
                let ns = t0.elapsed().as_nanos() as u64;
                let (count, busy) = &self.shared.stats[0];
                count.fetch_add(tasks as u64, Ordering::Relaxed);
                busy.fetch_add(ns, Ordering::Relaxed);
                self.shared.jobs_ns.fetch_add(ns, Ordering::Relaxed);
            }
            return r;
        }
        let _guard = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        let s = &*self.shared;
        // SAFETY: no worker reads `job` until the epoch below changes, and we wait for all of
        // them to finish before returning, so the erased lifetime never outlives `f`.
        unsafe {
            let f: *const Job =
                std::mem::transmute::<&(dyn Fn(usize, usize) + Sync), &'static Job>(f);
            *s.job.get() = Some(f);
        }
        s.tasks.store(tasks, Ordering::Relaxed);
        s.next.store(0, Ordering::Relaxed);
        s.finished.store(0, Ordering::Relaxed);
        s.epoch.fetch_add(1, Ordering::Release);
        for (_, t) in &self.workers {
            t.unpark();
        }
        run_tasks(s, 0);
        let want = self.workers.len();
        let (start, mut round) = (Instant::now(), 0);
        while s.finished.load(Ordering::Acquire) != want {
            wait_step(&mut round, start, s.spin);
        }
        // SAFETY: every worker has finished with the job.
        unsafe { *s.job.get() = None };
        if let Some(t0) = job_start {
            s.jobs_ns
                .fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
        }
        if s.panicked.swap(false, Ordering::AcqRel) {
            let msg = s.panic.lock().unwrap_or_else(|e| e.into_inner()).take();
            return Err(Error::Panic {
                msg: msg.unwrap_or_default(),
            });
        }
        Ok(())
    }
}

/// Core type per worker: pinned workers take their CPU's part number; worker 0 (the caller)
/// and unpinned workers the part of the CPU the caller is on now.
/// The core type of each worker a pool of `threads` workers pinned to `cpus` will have (as
/// [`Pool::with_cpus`] decides), known before the pool exists: layers pack their weights for
/// these cores' kernels only.
pub fn planned_cores(threads: usize, cpus: &[usize]) -> Vec<CoreKind> {
    worker_cores(threads.max(1), cpus, &cpu::detect())
}

fn worker_cores(threads: usize, cpus: &[usize], known: &[cpu::CpuInfo]) -> Vec<CoreKind> {
    if let Some(kind) = CoreKind::from_env() {
        return vec![kind; threads];
    }
    let here = CoreKind::from_part(cpu::current_part());
    if cpus.is_empty() {
        return vec![here; threads];
    }
    (0..threads)
        .map(|w| {
            if w == 0 {
                return here;
            }
            let id = cpus[w % cpus.len()];
            known
                .iter()
                .find(|c| c.id == id)
                .map_or(here, |c| CoreKind::from_part(c.part))
        })
        .collect()
}

/// The smallest L2 among `cpus` (all CPUs when the list is empty): tiles sized for it fit
/// in every cluster the pool may run on.
fn smallest_l2(cpus: &[usize], known: &[cpu::CpuInfo]) -> Option<usize> {
    known
        .iter()
        .filter(|c| cpus.is_empty() || cpus.contains(&c.id))
        .filter_map(|c| c.l2_bytes)
        .min()
}

/// Claims tasks until none are left, recording a panic instead of unwinding further.
fn run_tasks(s: &Shared, worker: usize) {
    // SAFETY: called only between the epoch publication and `finished` reaching its target.
    let f = unsafe { (*s.job.get()).expect("job published") };
    let tasks = s.tasks.load(Ordering::Relaxed);
    let stats = s.stats_on.load(Ordering::Relaxed);
    loop {
        let t = s.next.fetch_add(1, Ordering::Relaxed);
        if t >= tasks {
            break;
        }
        let start = stats.then(Instant::now);
        // SAFETY: see `Shared`; the closure outlives this call.
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe { (*f)(t, worker) }));
        if let Err(p) = result {
            let mut slot = s.panic.lock().unwrap_or_else(|e| e.into_inner());
            if slot.is_none() {
                *slot = Some(panic_message(&*p));
            }
            s.panicked.store(true, Ordering::Release);
        }
        if let Some(start) = start {
            let (count, busy) = &s.stats[worker];
            count.fetch_add(1, Ordering::Relaxed);
            busy.fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
        }
    }
}

fn worker_loop(s: &Shared, worker: usize) {
    let mut seen = 0usize;
    loop {
        let (start, mut round) = (Instant::now(), 0);
        loop {
            if s.shutdown.load(Ordering::Acquire) {
                return;
            }
            let e = s.epoch.load(Ordering::Acquire);
            if e != seen {
                seen = e;
                break;
            }
            if wait_step(&mut round, start, s.spin) {
                // A stale unpark token only causes one extra loop iteration.
                std::thread::park_timeout(Duration::from_millis(100));
            }
        }
        run_tasks(s, worker);
        s.finished.fetch_add(1, Ordering::Release);
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        shut_down(&self.shared, &mut self.workers);
    }
}

/// Tells the workers to exit and waits for them.
fn shut_down(shared: &Shared, workers: &mut Vec<(JoinHandle<()>, Thread)>) {
    shared.shutdown.store(true, Ordering::Release);
    for (h, t) in workers.drain(..) {
        t.unpark();
        let _ = h.join();
    }
}

/// Most threads a pool may have: far above any board or host this runs on, and low enough
/// that a wrong option cannot exhaust the process's threads.
pub const MAX_THREADS: usize = 256;

#[cfg(test)]
thread_local! {
    /// Tests: the worker index whose spawn fails (0: none).
    static FAIL_SPAWN_AT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn spawn_worker(w: usize, f: impl FnOnce() + Send + 'static) -> std::io::Result<JoinHandle<()>> {
    #[allow(unused_mut)]
    let mut name = format!("eq-worker-{w}");
    #[cfg(test)]
    {
        let fail_at = FAIL_SPAWN_AT.with(|c| c.get());
        if fail_at == w {
            return Err(std::io::Error::other("injected spawn failure"));
        }
        if fail_at != 0 {
            name = format!("eq-inject-{w}"); // found by the test, whatever else runs
        }
    }
    std::thread::Builder::new().name(name).spawn(f)
}

pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".into()
    }
}

/// A slice that parallel tasks write in disjoint parts.
pub struct SharedMut<'a, T> {
    ptr: *mut T,
    len: usize,
    _life: std::marker::PhantomData<&'a mut [T]>,
}

// SAFETY: access goes through `slice`, whose contract requires disjoint ranges.
unsafe impl<T: Send> Sync for SharedMut<'_, T> {}
unsafe impl<T: Send> Send for SharedMut<'_, T> {}

impl<'a, T> SharedMut<'a, T> {
    pub fn new(s: &'a mut [T]) -> Self {
        SharedMut {
            ptr: s.as_mut_ptr(),
            len: s.len(),
            _life: std::marker::PhantomData,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// # Safety
    /// No two live slices returned by this call may overlap.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice(&self, start: usize, len: usize) -> &mut [T] {
        assert!(
            start <= self.len && len <= self.len - start,
            "SharedMut range out of bounds"
        );
        std::slice::from_raw_parts_mut(self.ptr.add(start), len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    /// Live threads of this process whose name starts with `prefix` (Linux), or None.
    fn live_threads(prefix: &str) -> Option<usize> {
        let tasks = std::fs::read_dir("/proc/self/task").ok()?;
        Some(
            tasks
                .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                .filter(|name| name.starts_with(prefix))
                .count(),
        )
    }

    #[test]
    fn a_failed_spawn_stops_the_workers_already_started() {
        FAIL_SPAWN_AT.with(|c| c.set(3));
        let err = Pool::new(6).err().expect("the injected failure");
        FAIL_SPAWN_AT.with(|c| c.set(0));
        assert!(
            err.to_string().contains("cannot start worker 3 of 6"),
            "{err}"
        );
        // Joined threads can linger in /proc for a moment after they exit (under qemu-user
        // longer): wait up to 2 s. Workers that were never told to stop stay there forever.
        let mut left = live_threads("eq-inject-");
        for _ in 0..200 {
            if left.unwrap_or(0) == 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
            left = live_threads("eq-inject-");
        }
        assert_eq!(left.unwrap_or(0), 0, "workers 1 and 2 were joined");
        assert!(Pool::new(6).is_ok());
    }

    #[test]
    fn thread_count_is_capped() {
        let err = Pool::new(MAX_THREADS + 1).err().expect("too many threads");
        assert!(err.to_string().contains("at most 256"), "{err}");
        assert!(Pool::new(1_000_000).is_err());
    }

    #[test]
    fn every_task_runs_once_with_valid_worker_ids() {
        for threads in 1..=4 {
            let pool = Pool::new(threads).unwrap();
            for tasks in [0, 1, 2, 3, 7, 64, 1000] {
                let hits: Vec<AtomicUsize> = (0..tasks).map(|_| AtomicUsize::new(0)).collect();
                let bad_worker = AtomicBool::new(false);
                pool.run(tasks, &|t, w| {
                    hits[t].fetch_add(1, Ordering::Relaxed);
                    if w >= threads {
                        bad_worker.store(true, Ordering::Relaxed);
                    }
                })
                .unwrap();
                assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
                assert!(!bad_worker.load(Ordering::Relaxed));
            }
        }
    }

    #[test]
    fn thousands_of_consecutive_jobs() {
        let pool = Pool::new(3).unwrap();
        let sum = AtomicU64::new(0);
        for _ in 0..5000 {
            pool.run(8, &|t, _| {
                sum.fetch_add(t as u64, Ordering::Relaxed);
            })
            .unwrap();
        }
        assert_eq!(sum.load(Ordering::Relaxed), 5000 * 28);
    }

    #[test]
    fn a_panicking_task_is_an_error_and_the_pool_survives() {
        let pool = Pool::new(2).unwrap();
        let e = pool
            .run(16, &|t, _| assert!(t != 5, "task five failed"))
            .unwrap_err();
        assert!(e.to_string().contains("task five failed"), "{e}");
        let n = AtomicUsize::new(0);
        pool.run(16, &|_, _| {
            n.fetch_add(1, Ordering::Relaxed);
        })
        .unwrap();
        assert_eq!(n.load(Ordering::Relaxed), 16);
    }

    #[test]
    fn mixed_cores_are_seen() {
        let mut pool = Pool::new(2).unwrap();
        assert!(!pool.mixed_cores() || CoreKind::from_env().is_none());
        pool.set_cores_for_test(vec![CoreKind::CortexA53, CoreKind::CortexA53]);
        assert!(!pool.mixed_cores());
        pool.set_cores_for_test(vec![CoreKind::CortexA53, CoreKind::CortexA72]);
        assert!(pool.mixed_cores());
        assert_eq!(pool.core_kind(1), CoreKind::CortexA72);
    }

    #[test]
    fn workers_resume_after_parking() {
        let pool = Pool::new(2).unwrap();
        std::thread::sleep(SPIN * 3);
        let n = AtomicUsize::new(0);
        pool.run(4, &|_, _| {
            n.fetch_add(1, Ordering::Relaxed);
        })
        .unwrap();
        assert_eq!(n.load(Ordering::Relaxed), 4);
    }
}
