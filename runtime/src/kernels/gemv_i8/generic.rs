//! Plain Rust int8 GEMV over the packed layout, int32 throughout.

use super::{Input, BLOCK, ROWS};

pub fn dot4(group: &[i8], x: &Input) -> [i32; ROWS] {
    let mut sums = [0i32; ROWS];
    for (b, block) in group.chunks_exact(ROWS * BLOCK).enumerate() {
        let xb = x.block(b);
        for (s, w) in sums.iter_mut().zip(block.chunks_exact(BLOCK)) {
            *s += w
                .iter()
                .zip(xb)
                .map(|(&a, &b)| a as i32 * b as i32)
                .sum::<i32>();
        }
    }
    sums
}
