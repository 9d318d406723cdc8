//! How a GEMM's output is cut into pool tasks: column blocks, and row blocks when the columns
//! are few (late, small feature maps), chosen so the busiest worker has the least work.
//!
//! Cutting only by columns leaves a worker idle when the columns do not divide well: ResNet's
//! 14x14 maps (196 columns) in 32-column panels gave one worker 128 columns and the other 68.
//! The candidates are priced with a cost model (padded columns the micro-kernels compute, times
//! the rows plus the B packing each block repeats, plus the weights each block streams) and the
//! pool's in-order dynamic claiming.
//! The split never changes results: every output element is summed in the same order.

use crate::pool::Pool;

/// Rows' worth of FP32 micro-kernel work one block's B packing costs (every block packs its
/// columns again; packing a K-column is about as dear as a few rows of multiply-adds).
const PACK_ROWS: usize = 4;

/// Largest pool the search models (larger pools keep the plain rule).
const WORKERS_MAX: usize = 16;

/// `n_blocks` column blocks of `nc` columns (the last one shorter) times `m_blocks` row
/// blocks of `units_per_block` row units (the last one shorter). Task `t` is column block
/// `t % n_blocks` of row block `t / n_blocks`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Split {
    pub nc: usize,
    pub n_blocks: usize,
    pub units_per_block: usize,
    pub m_blocks: usize,
}

/// A product's geometry as the split sees it.
#[derive(Clone, Copy, Debug)]
pub struct Product {
    /// Output columns.
    pub n: usize,
    /// Column blocks are multiples of this (the kernels' `nr`).
    pub unit_n: usize,
    /// Widest column block the scratch and the cache blocking allow (a multiple of `unit_n`).
    pub nc_max: usize,
    /// Row units (panels of the kernels' `mr` rows).
    pub units: usize,
    /// Rows per unit.
    pub unit_rows: usize,
    /// Fewest row units the plain rule gives a row block (each block packs its columns
    /// again: the FP32 GEMM keeps at least 4 panels per block, the integer GEMM 1).
    pub min_units: usize,
    /// Columns' worth of micro-kernel work it costs a block to stream one row of weights
    /// (A) from memory. Every block reads the weights of its rows, so column blocks over
    /// the same rows read them again: with few columns (7x7 maps, N = 49) splitting by
    /// columns makes each worker stream the whole weight matrix for a few multiply-adds
    /// per weight, and the cores share the memory bandwidth.
    pub weight_cols: usize,
}

impl Split {
    pub fn tasks(&self) -> usize {
        self.n_blocks * self.m_blocks
    }

    /// Task `t`'s column block and row block.
    #[inline]
    pub fn block(&self, t: usize) -> (usize, usize) {
        (t % self.n_blocks, t / self.n_blocks)
    }

    /// The split of `p` for `threads` workers (`mixed`: of different speeds). `padded(c)`:
    /// columns the micro-kernels compute for a block of `c` columns (tails included).
    pub fn choose(
        p: Product,
        threads: usize,
        mixed: bool,
        padded: impl Fn(usize) -> usize,
    ) -> Split {
        let rule = Split::columns_first(p, threads, mixed);
        // Speeds unknown (mixed), nothing to balance, or columns enough for even blocks.
        if mixed || threads <= 1 || threads > WORKERS_MAX || rule.n_blocks >= 2 * threads {
            return rule;
        }
        let cost = |s: &Split| max_load(s, p, threads, &padded);
        let mut best = (cost(&rule), rule.tasks(), rule);
        // Every way of cutting into at most 2 blocks per worker.
        for n_blocks in 1..=2 * threads {
            let nc = p.n.div_ceil(n_blocks).div_ceil(p.unit_n) * p.unit_n;
            if nc > p.nc_max || p.n.div_ceil(nc) != n_blocks {
                continue;
            }
            for m_blocks in 1..=(2 * threads / n_blocks).min(p.units) {
                let units_per_block = p.units.div_ceil(m_blocks);
                let s = Split {
                    nc,
                    n_blocks,
                    units_per_block,
                    m_blocks: p.units.div_ceil(units_per_block),
                };
                let c = (cost(&s), s.tasks(), s);
                if (c.0, c.1) < (best.0, best.1) {
                    best = c;
                }
            }
        }
        best.2
    }

    /// The plain rule: column blocks of at most `nc_max`, at least one task per worker when
    /// there are columns enough, then row blocks up to that many tasks. (The integer GEMM
    /// keeps it: its packing is dearer next to its multiply-adds, and the balanced choice
    /// measured no faster there.)
    pub fn columns_first(p: Product, threads: usize, mixed: bool) -> Split {
        // Tasks are claimed dynamically: one per worker on identical cores; on a big.LITTLE
        // pool several per worker, so the big cores take the larger share instead of waiting.
        let tasks = if mixed {
            Pool::TASKS_PER_MIXED_WORKER * threads
        } else {
            threads
        };
        let nc = p
            .nc_max
            .min(p.n.div_ceil(tasks).div_ceil(p.unit_n) * p.unit_n)
            .max(p.unit_n);
        let n_blocks = p.n.div_ceil(nc);
        let m_blocks = if n_blocks >= tasks {
            1
        } else {
            tasks
                .div_ceil(n_blocks)
                .min(p.units.div_ceil(p.min_units))
                .max(1)
        };
        let units_per_block = p.units.div_ceil(m_blocks);
        Split {
            nc,
            n_blocks,
            units_per_block,
            m_blocks: p.units.div_ceil(units_per_block),
        }
    }
}

/// Work of the busiest of `workers` equal workers claiming `s`'s tasks in order, each the
/// next one as it becomes free.
fn max_load(s: &Split, p: Product, workers: usize, padded: &impl Fn(usize) -> usize) -> usize {
    let mut load = [0usize; WORKERS_MAX];
    let load = &mut load[..workers];
    for t in 0..s.tasks() {
        let (nb, mb) = s.block(t);
        let cols = s.nc.min(p.n - nb * s.nc);
        let units = s.units_per_block.min(p.units - mb * s.units_per_block);
        let rows = units * p.unit_rows;
        let work = padded(cols) * (rows + PACK_ROWS) + p.weight_cols * rows;
        let free = load
            .iter_mut()
            .min_by_key(|l| **l)
            .expect("at least one worker");
        *free += work;
    }
    load.iter().copied().max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(n: usize, unit_n: usize, units: usize) -> Product {
        Product {
            n,
            unit_n,
            nc_max: 384,
            units,
            unit_rows: 12,
            min_units: 1,
            weight_cols: 0,
        }
    }
    fn round_up(unit: usize) -> impl Fn(usize) -> usize {
        move |c| c.div_ceil(unit) * unit
    }

    /// Every column and row unit is in exactly one task.
    fn covers(s: &Split, p: Product) {
        let mut seen = vec![0u8; p.n * p.units];
        for t in 0..s.tasks() {
            let (nb, mb) = s.block(t);
            assert!(
                nb * s.nc < p.n && mb * s.units_per_block < p.units,
                "{s:?} {t}"
            );
            for u in mb * s.units_per_block..p.units.min((mb + 1) * s.units_per_block) {
                for c in nb * s.nc..p.n.min((nb + 1) * s.nc) {
                    seen[u * p.n + c] += 1;
                }
            }
        }
        assert!(seen.iter().all(|&x| x == 1), "{s:?} {p:?}");
        assert!(s.nc <= p.nc_max && s.nc.is_multiple_of(p.unit_n), "{s:?}");
    }

    #[test]
    fn every_split_covers_the_output_once() {
        for threads in 1..=6 {
            for mixed in [false, true] {
                for n in [1, 7, 31, 32, 33, 49, 100, 196, 400, 784, 3136, 12544] {
                    for units in [1, 2, 3, 5, 43, 171] {
                        let p = product(n, 32, units);
                        let s = Split::choose(p, threads, mixed, round_up(32));
                        covers(&s, p);
                        assert!(s.tasks() >= 1);
                    }
                }
            }
        }
    }

    #[test]
    fn uneven_columns_are_cut_by_rows_instead() {
        // 196 columns in 32-wide panels on 2 workers: 128 + 68 by columns; by rows each
        // worker gets every column and half the rows.
        let p = product(196, 32, 43);
        let s = Split::choose(p, 2, false, round_up(32));
        let rule = Split::columns_first(p, 2, false);
        assert_eq!((rule.nc, rule.n_blocks), (128, 2));
        assert!(
            max_load(&s, p, 2, &round_up(32)) * 10 < max_load(&rule, p, 2, &round_up(32)) * 9,
            "{s:?}"
        );
        // Many columns keep the column rule.
        let wide = product(12544, 32, 43);
        assert_eq!(
            Split::choose(wide, 2, false, round_up(32)),
            Split::columns_first(wide, 2, false)
        );
    }

    #[test]
    fn few_columns_are_cut_by_rows_when_weights_cost() {
        // ResNet-50's res5 1x1 layers: 49 columns, 2048 rows. By columns (32 + 17) each of 2
        // workers streams all the weights; by rows each streams half of them.
        let p = Product {
            weight_cols: 16,
            ..product(49, 32, 171)
        };
        let s = Split::choose(p, 2, false, round_up(16));
        assert_eq!((s.n_blocks, s.m_blocks), (1, 2), "{s:?}");
        // Without the weights' cost the column split is as cheap and stays.
        let free = product(49, 32, 171);
        assert_eq!(Split::choose(free, 2, false, round_up(16)).n_blocks, 2);
    }

    #[test]
    fn the_choice_is_never_worse_than_the_rule() {
        for threads in 2..=4 {
            for n in (1..300).step_by(7) {
                for units in [1, 2, 4, 9, 43] {
                    let p = product(n, 8, units);
                    let s = Split::choose(p, threads, false, round_up(8));
                    let rule = Split::columns_first(p, threads, false);
                    assert!(
                        max_load(&s, p, threads, &round_up(8))
                            <= max_load(&rule, p, threads, &round_up(8))
                    );
                }
            }
        }
    }

    #[test]
    fn mixed_pools_keep_many_small_tasks() {
        let p = product(196, 8, 43);
        let s = Split::choose(p, 6, true, round_up(8));
        assert_eq!(s, Split::columns_first(p, 6, true));
        assert!(s.tasks() >= 6 * Pool::TASKS_PER_MIXED_WORKER / 2);
    }
}
