//! Test support shared by the integration tests: a global allocator that counts the
//! allocations made while armed, on the calling thread and on the worker threads of a pool
//! the caller names (a net's pool runs half its tiles there). Other tests running in parallel
//! are not counted: each armed window is a session, and only threads marked with its id count.

#![allow(dead_code)] // each test binary uses part of it

use eq_runtime::capi::{eq_net_free, eq_net_get_output, eq_net_load_memory, eq_net_run};
use eq_runtime::capi::{eq_net_set_input, eq_options_free, eq_options_new};
use eq_runtime::capi::{eq_options_set_threads, EqNet, EqOptions};
use eq_runtime::net::Net;
use eq_runtime::pool::Pool;
use eq_runtime::rng::Rng;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ffi::CStr;
use std::ptr::null_mut;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex};

struct CountingAllocator;

/// The armed session (0: none), the last session handed out, and the count of the armed one.
static ARMED: AtomicUsize = AtomicUsize::new(0);
static SESSIONS: AtomicUsize = AtomicUsize::new(0);
static COUNT: AtomicUsize = AtomicUsize::new(0);
/// One armed window at a time.
static WINDOW: Mutex<()> = Mutex::new(());

thread_local! {
    /// The session this thread counts for.
    static SESSION: Cell<usize> = const { Cell::new(0) };
}

/// Set while [`count_all_threads`] counts every thread of the process.
static ALL_THREADS: AtomicBool = AtomicBool::new(false);

fn note_allocation() {
    if ALL_THREADS.load(Ordering::Relaxed) {
        COUNT.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let armed = ARMED.load(Ordering::Relaxed);
    // `try_with`: thread-locals may already be gone while a thread exits.
    if armed != 0 && SESSION.try_with(Cell::get).unwrap_or(0) == armed {
        COUNT.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: forwards to the system allocator; the bookkeeping touches only const-initialised
// thread-locals, which never allocate.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Allocations (alloc, alloc_zeroed, realloc) made on this thread while `f` runs.
pub fn count_allocations<R>(f: impl FnOnce() -> R) -> (R, usize) {
    count_allocations_with(None, f)
}

/// Allocations made while `f` runs on this thread and on every worker of `pool`.
pub fn count_allocations_with<R>(pool: Option<&Pool>, f: impl FnOnce() -> R) -> (R, usize) {
    session(pool).count(f)
}

/// A counting session: this thread and the marked workers count for it, and no other
/// session can arm until it is dropped.
pub struct Session {
    id: usize,
    _window: std::sync::MutexGuard<'static, ()>,
}

/// Starts a session and marks this thread and every worker of `pool` as its own.
pub fn session(pool: Option<&Pool>) -> Session {
    let window = WINDOW.lock().unwrap_or_else(|e| e.into_inner());
    let id = SESSIONS.fetch_add(1, Ordering::Relaxed) + 1;
    SESSION.with(|s| s.set(id));
    if let Some(pool) = pool {
        // One task per thread, each held at a barrier until all are taken: every worker
        // (and the caller) runs exactly one and marks itself.
        let barrier = Barrier::new(pool.threads());
        pool.run(pool.threads(), &|_, _| {
            SESSION.with(|s| s.set(id));
            barrier.wait();
        })
        .expect("marking the pool's workers");
    }
    Session {
        id,
        _window: window,
    }
}

impl Session {
    /// Allocations of this session's threads while `f` runs.
    pub fn count<R>(&self, f: impl FnOnce() -> R) -> (R, usize) {
        COUNT.store(0, Ordering::SeqCst);
        ARMED.store(self.id, Ordering::SeqCst);
        let r = f();
        ARMED.store(0, Ordering::SeqCst);
        (r, COUNT.load(Ordering::SeqCst))
    }
}

/// Allocations made by every thread of the process while `f` runs: for threads the test
/// cannot mark (the pool of a net behind the C ABI). Only for a test binary holding a single
/// test, so nothing else runs meanwhile.
pub fn count_all_threads<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let _window = WINDOW.lock().unwrap_or_else(|e| e.into_inner());
    COUNT.store(0, Ordering::SeqCst);
    ALL_THREADS.store(true, Ordering::SeqCst);
    let r = f();
    ALL_THREADS.store(false, Ordering::SeqCst);
    (r, COUNT.load(Ordering::SeqCst))
}

/// The count of the last armed window (it does not move while nothing is armed).
pub fn counted() -> usize {
    COUNT.load(Ordering::SeqCst)
}

/// Conv 3x3 (8 ch) + ReLU, max pool, InnerProduct 10: the GEMM, pooling and GEMV paths.
pub const SMALL: &str = "7767517\n5 5\nInput in 0 1 data 0=8 1=8 2=3\n\
Convolution conv 1 1 data c 0=8 1=3 4=1 5=1 6=216\nReLU relu 1 1 c r\n\
Pooling pool 1 1 r p 0=0 1=2 2=2\nInnerProduct fc 1 1 p out 0=10 1=1 2=1280\n";

/// Seeded weights for `SMALL` in ncnn's .bin layout (flag word 0 = raw fp32).
pub fn small_weights(seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut floats: Vec<f32> = Vec::new();
    for (tagged, n) in [(true, 216), (false, 8), (true, 1280), (false, 10)] {
        if tagged {
            floats.push(0.0); // the all-zero flag word reads the same as 0.0f32
        }
        floats.extend(rng.vec(n, -1.0, 1.0));
    }
    bytemuck::cast_slice(&floats).to_vec()
}

/// Fills input `name` with seeded values, runs, and returns the first output.
pub fn run_once(net: &mut Net, name: &str, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let input = net.input_mut(name).unwrap();
    let values = rng.vec(input.data.len(), -1.0, 1.0);
    input.data.copy_from_slice(&values);
    net.run().unwrap();
    let out = net.outputs().next().unwrap().0.to_string();
    net.blob(&out).unwrap().data.to_vec()
}

/// A net loaded through the C ABI (freed on drop), for tests of what C programs see.
pub struct CNet(std::ptr::NonNull<EqNet>);

impl CNet {
    /// Loads a text param and its weights on `threads` threads.
    pub fn load(param: &str, bin: &[u8], threads: i32) -> CNet {
        let mut opts: *mut EqOptions = null_mut();
        let mut net: *mut EqNet = null_mut();
        // SAFETY: valid out-pointers and buffers of the given lengths; `opts` is freed once.
        unsafe {
            assert_eq!(eq_options_new(&mut opts), 0);
            assert_eq!(eq_options_set_threads(opts, threads), 0);
            let status = eq_net_load_memory(
                param.as_ptr().cast(),
                param.len(),
                bin.as_ptr().cast(),
                bin.len(),
                opts,
                &mut net,
            );
            assert_eq!(status, 0);
            assert_eq!(eq_options_free(opts), 0);
        }
        CNet(std::ptr::NonNull::new(net).expect("a loaded net"))
    }

    /// One inference: `input` into blob `input_name`, run, blob `output` copied into `out`
    /// (which must fit it exactly).
    pub fn run(&mut self, input_name: &CStr, input: &[f32], output: &CStr, out: &mut [f32]) {
        let mut count = 0usize;
        let net = self.0.as_ptr();
        // SAFETY: a live net; NUL-terminated names; buffers of the lengths passed.
        unsafe {
            let status = eq_net_set_input(net, input_name.as_ptr(), input.as_ptr(), input.len());
            assert_eq!(status, 0);
            assert_eq!(eq_net_run(net), 0);
            let status = eq_net_get_output(
                net,
                output.as_ptr(),
                out.as_mut_ptr(),
                out.len(),
                &mut count,
                null_mut(),
            );
            assert_eq!(status, 0);
        }
        assert_eq!(count, out.len());
    }
}

impl Drop for CNet {
    fn drop(&mut self) {
        assert_eq!(eq_net_free(self.0.as_ptr()), 0);
    }
}

// SAFETY: a net handle may move between threads (it is used by one thread at a time).
unsafe impl Send for CNet {}
