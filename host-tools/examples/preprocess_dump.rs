//! Test helper for tests/preprocess_check.py: preprocesses images with a preset and writes
//! the (c, h, w) float32 tensors back to back, little-endian, to one file.
//!
//! Usage: preprocess_dump <preset> <out.f32> <image>...

use anyhow::{bail, Context, Result};
use eq_tools::dataset::Preprocess;
use std::io::Write;
use std::path::Path;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        bail!("usage: preprocess_dump <preset> <out.f32> <image>...");
    }
    let prep = Preprocess::preset(&args[0]).with_context(|| format!("no preset {}", args[0]))?;
    let mut out = std::io::BufWriter::new(std::fs::File::create(&args[1])?);
    for image in &args[2..] {
        for v in prep.load(Path::new(image))? {
            out.write_all(&v.to_le_bytes())?;
        }
    }
    out.flush()?;
    Ok(())
}
