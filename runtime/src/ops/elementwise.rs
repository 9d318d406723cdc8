//! Splitting element-wise work across the pool: contiguous chunks of a flat buffer, or whole
//! groups (rows / channels) for per-channel layers. Small buffers stay on one worker, where
//! waking the others would cost more than the work.

use crate::error::{invalid, LayerResult};
use crate::pool::{Pool, SharedMut};

/// Elements below which the work runs as a single task.
pub const PARALLEL_MIN: usize = 1 << 14;

/// Calls `f(first_group, groups)` on disjoint runs of whole `group_len`-sized groups of
/// `data`, in parallel; `first_group` is the index of the run's first group.
pub fn for_each_groups(
    pool: &Pool,
    data: &mut [f32],
    group_len: usize,
    f: &(dyn Fn(usize, &mut [f32]) + Sync),
) -> LayerResult<()> {
    if group_len == 0 || data.is_empty() {
        return Ok(());
    }
    let groups = data.len() / group_len;
    let tasks = if data.len() >= PARALLEL_MIN {
        pool.threads().min(groups)
    } else {
        1
    };
    if tasks <= 1 {
        f(0, data);
        return Ok(());
    }
    let shared = SharedMut::new(data);
    pool.run(tasks, &|t, _| {
        let (lo, hi) = (groups * t / tasks, groups * (t + 1) / tasks);
        // SAFETY: tasks take disjoint group ranges.
        let part = unsafe { shared.slice(lo * group_len, (hi - lo) * group_len) };
        f(lo, part);
    })
    .map_err(|e| invalid(e.to_string()))
}

/// Calls `f` on disjoint contiguous chunks of `data`, in parallel.
pub fn for_each_chunk(
    pool: &Pool,
    data: &mut [f32],
    f: &(dyn Fn(&mut [f32]) + Sync),
) -> LayerResult<()> {
    for_each_groups(pool, data, 1, &|_, part| f(part))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_every_group_once() {
        let pool = Pool::new(3).unwrap();
        let mut data = vec![0.0f32; 7 * PARALLEL_MIN / 4];
        let group = PARALLEL_MIN / 4;
        for_each_groups(&pool, &mut data, group, &|first, part| {
            for (g, chunk) in part.chunks_exact_mut(group).enumerate() {
                chunk.iter_mut().for_each(|v| *v += (first + g) as f32);
            }
        })
        .unwrap();
        for (g, chunk) in data.chunks_exact(group).enumerate() {
            assert!(chunk.iter().all(|&v| v == g as f32));
        }
        let mut small = vec![1.0f32; 10];
        for_each_chunk(&pool, &mut small, &|p| p.iter_mut().for_each(|v| *v *= 2.0)).unwrap();
        assert_eq!(small, vec![2.0; 10]);
    }
}
