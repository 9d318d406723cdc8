//! Test support shared by the integration tests: a global allocator that counts the
//! allocations made while armed, on the calling thread and on the worker threads of a pool
//! the caller names (a net's pool runs half its tiles there). Other tests running in parallel
//! are not counted: each armed window is a session, and only threads marked with its id count.

#![allow(dead_code)] // each test binary uses part of it

use eq_runtime::pool::Pool;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
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

fn note_allocation() {
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

/// The count of the last armed window (it does not move while nothing is armed).
pub fn counted() -> usize {
    COUNT.load(Ordering::SeqCst)
}
