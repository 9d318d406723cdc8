//! What the fp32 and int8 im2col packers share: splitting a panel's columns into runs that
//! stay on one output row, so each run reads one input row (contiguously at stride 1).

/// Most columns a panel has (the widest micro-kernel tile).
pub const MAX_COLS: usize = 16;

/// One run: (first column in the panel, length, input y and x of its first column at kernel
/// tap (0, 0), before dilation; negative inside the padding).
pub type Run = (usize, usize, isize, isize);

/// Output-grid placement of an im2col matrix's columns.
#[derive(Clone, Copy, Debug)]
pub struct Grid {
    pub out_w: usize,
    pub stride_w: usize,
    pub stride_h: usize,
    pub pad_left: usize,
    pub pad_top: usize,
}

impl Grid {
    /// Columns `c0..c0 + cols` (`cols <= MAX_COLS`) as runs; returns them and their count.
    #[inline]
    pub fn runs(&self, c0: usize, cols: usize) -> ([Run; MAX_COLS], usize) {
        debug_assert!(cols <= MAX_COLS);
        let mut runs = [(0usize, 0usize, 0isize, 0isize); MAX_COLS];
        let (mut n, mut col) = (0, 0);
        while col < cols {
            let (oy, ox) = ((c0 + col) / self.out_w, (c0 + col) % self.out_w);
            let len = (self.out_w - ox).min(cols - col);
            runs[n] = (
                col,
                len,
                (oy * self.stride_h) as isize - self.pad_top as isize,
                (ox * self.stride_w) as isize - self.pad_left as isize,
            );
            n += 1;
            col += len;
        }
        (runs, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_break_at_row_ends() {
        let g = Grid {
            out_w: 5,
            stride_w: 2,
            stride_h: 3,
            pad_left: 1,
            pad_top: 2,
        };
        let (runs, n) = g.runs(3, 8);
        assert_eq!(n, 3);
        // Columns 3..5 on row 0, 5..10 on row 1, 10..11 on row 2.
        assert_eq!(runs[0], (0, 2, -2, 5));
        assert_eq!(runs[1], (2, 5, 1, -1));
        assert_eq!(runs[2], (7, 1, 4, -1));
    }
}
