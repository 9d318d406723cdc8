//! The thread pool that runs one layer's tiles in parallel.
//!
//! This first version runs every task on the calling thread; the fixed, pinned worker pool
//! replaces its body behind the same interface.

use crate::error::{Error, Result};

pub struct Pool {
    threads: usize,
}

impl Pool {
    /// A pool with `threads` workers (at least 1).
    pub fn new(threads: usize) -> Result<Pool> {
        Ok(Pool {
            threads: threads.max(1),
        })
    }

    /// Number of workers; task closures receive a worker index below this.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f(task, worker)` for every task in `0..tasks` and returns when all are done.
    /// Each worker index is used by at most one thread at a time, so per-worker scratch
    /// indexed by it is never shared. A panicking task becomes an error.
    pub fn run(&self, tasks: usize, f: &(dyn Fn(usize, usize) + Sync)) -> Result<()> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for t in 0..tasks {
                f(t, 0);
            }
        }))
        .map_err(|p| Error::Panic {
            msg: panic_message(&p),
        })
    }
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
