//! The `.bin` weight file: tagged and raw blobs in layer order (ncnn-format.md §4).
//!
//! The file is memory-mapped and fp32 / int8 payloads are borrowed in place; fp16 and
//! codebook payloads are decoded once at load. A reader without a file yields zeros, as
//! benchncnn's `DataReaderFromEmpty` does.

use crate::error::{Error, Result};
use std::ops::Deref;
use std::sync::Arc;

pub(crate) const TAG_FP16: u32 = 0x0130_6B47;
const TAG_INT8: u32 = 0x000D_4B38;
const TAG_FP32_SCALED: u32 = 0x0002_C056;

/// Where weight bytes come from.
pub enum Source {
    Mapped(memmap2::Mmap),
    /// In-memory bytes, stored in u32 words so fp32 views are aligned.
    Owned {
        words: Vec<u32>,
        len: usize,
    },
}

impl Source {
    pub fn bytes(&self) -> &[u8] {
        match self {
            Source::Mapped(m) => m,
            Source::Owned { words, len } => &bytemuck::cast_slice(words)[..*len],
        }
    }

    pub fn from_bytes(bytes: &[u8]) -> Source {
        let mut words = vec![0u32; bytes.len().div_ceil(4)];
        bytemuck::cast_slice_mut::<u32, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
        Source::Owned {
            words,
            len: bytes.len(),
        }
    }

    pub fn map(path: &std::path::Path) -> Result<Source> {
        let io = |e: std::io::Error| Error::Io {
            path: path.display().to_string(),
            msg: e.to_string(),
        };
        let file = std::fs::File::open(path).map_err(io)?;
        if file.metadata().map_err(io)?.len() == 0 {
            return Ok(Source::from_bytes(&[]));
        }
        // SAFETY: the mapping is read-only; the documented hazard is another process truncating
        // the file while it is mapped, which a model loader cannot prevent (ncnn has the same).
        let map = unsafe { memmap2::MmapOptions::new().map(&file) }.map_err(io)?;
        Ok(Source::Mapped(map))
    }
}

/// fp32 weights, either borrowed from the weight file or owned (decoded / synthetic).
#[derive(Clone)]
pub enum Floats {
    Borrowed {
        src: Arc<Source>,
        offset: usize,
        len: usize,
    },
    Owned(Arc<[f32]>),
}

impl Floats {
    pub fn owned(v: Vec<f32>) -> Floats {
        Floats::Owned(v.into())
    }
    pub fn is_borrowed(&self) -> bool {
        matches!(self, Floats::Borrowed { .. })
    }
}

impl Deref for Floats {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        match self {
            Floats::Borrowed { src, offset, len } => {
                // Offsets are multiples of 4 in a page-aligned or u32-backed buffer; checked
                // when the view was created, so this cast cannot fail.
                bytemuck::cast_slice(&src.bytes()[*offset..*offset + 4 * *len])
            }
            Floats::Owned(v) => v,
        }
    }
}

impl std::fmt::Debug for Floats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Floats({} values{})",
            self.len(),
            if self.is_borrowed() { ", mapped" } else { "" }
        )
    }
}

/// int8 weights borrowed from the weight file (or owned when quantized at load).
#[derive(Clone)]
pub enum Int8s {
    Borrowed {
        src: Arc<Source>,
        offset: usize,
        len: usize,
    },
    Owned(Arc<[i8]>),
}

impl Deref for Int8s {
    type Target = [i8];
    fn deref(&self) -> &[i8] {
        match self {
            Int8s::Borrowed { src, offset, len } => {
                bytemuck::cast_slice(&src.bytes()[*offset..*offset + *len])
            }
            Int8s::Owned(v) => v,
        }
    }
}

impl std::fmt::Debug for Int8s {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Int8s({} values)", self.len())
    }
}

/// A tagged weight blob as stored.
#[derive(Clone, Debug)]
pub enum Tagged {
    F32(Floats),
    I8(Int8s),
}

impl Tagged {
    /// The blob as fp32; int8-tagged data is an error for layers that have no int8 path.
    pub fn into_f32(self) -> std::result::Result<Floats, String> {
        match self {
            Tagged::F32(f) => Ok(f),
            Tagged::I8(_) => Err("int8-tagged weights where fp32 weights are required".into()),
        }
    }
}

/// Walks the weight file in the order the layers request their blobs.
pub struct WeightReader {
    src: Option<Arc<Source>>,
    pos: usize,
    file: String,
    layer: String,
}

impl WeightReader {
    pub fn new(src: Arc<Source>, file: impl Into<String>) -> WeightReader {
        WeightReader {
            src: Some(src),
            pos: 0,
            file: file.into(),
            layer: String::new(),
        }
    }

    /// A reader that yields zero weights for every request (benchncnn's empty reader).
    pub fn zeros() -> WeightReader {
        WeightReader {
            src: None,
            pos: 0,
            file: "<zero weights>".into(),
            layer: String::new(),
        }
    }

    pub fn is_zeros(&self) -> bool {
        self.src.is_none()
    }

    /// Names the layer that subsequent reads belong to (for error messages).
    pub fn set_layer(&mut self, name: &str) {
        self.layer.clear();
        self.layer.push_str(name);
    }

    pub fn file(&self) -> &str {
        &self.file
    }

    fn err(&self, msg: String) -> Error {
        Error::Weights {
            file: self.file.clone(),
            layer: self.layer.clone(),
            msg,
        }
    }

    /// Takes `n` bytes (padded to 4) from the current position.
    fn take(&mut self, n: usize, what: &str) -> Result<(Arc<Source>, usize)> {
        let src = self.src.clone().expect("take on a zero reader");
        let padded = n
            .checked_add(3)
            .map(|v| v & !3)
            .ok_or_else(|| self.err(format!("{what}: size overflow")))?;
        let have = src.bytes().len() - self.pos;
        if padded > have {
            return Err(self.err(format!(
                "{what}: needs {padded} bytes at offset {}, only {have} left (truncated .bin or it does not match the .param)",
                self.pos
            )));
        }
        let at = self.pos;
        self.pos += padded;
        Ok((src, at))
    }

    fn word(&mut self, what: &str) -> Result<u32> {
        let (src, at) = self.take(4, what)?;
        let b = &src.bytes()[at..at + 4];
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn floats_at(&mut self, n: usize, what: &str) -> Result<Floats> {
        let bytes = n
            .checked_mul(4)
            .ok_or_else(|| self.err(format!("{what}: size overflow")))?;
        let (src, offset) = self.take(bytes, what)?;
        debug_assert!(
            bytemuck::try_cast_slice::<u8, f32>(&src.bytes()[offset..offset + bytes]).is_ok()
        );
        Ok(Floats::Borrowed {
            src,
            offset,
            len: n,
        })
    }

    /// A raw (untagged) float32 array: biases, BatchNorm statistics, scales.
    pub fn raw(&mut self, n: usize, what: &str) -> Result<Floats> {
        if self.src.is_none() {
            return Ok(Floats::owned(vec![0.0; n]));
        }
        self.floats_at(n, what)
    }

    /// A tagged blob of `n` elements: fp32, fp16, int8 or codebook-quantized.
    pub fn tagged(&mut self, n: usize, what: &str) -> Result<Tagged> {
        if self.src.is_none() {
            return Ok(Tagged::F32(Floats::owned(vec![0.0; n])));
        }
        let tag = self.word(&format!("{what} flag"))?;
        match tag {
            0 | TAG_FP32_SCALED => Ok(Tagged::F32(self.floats_at(n, what)?)),
            TAG_FP16 => {
                let bytes = n
                    .checked_mul(2)
                    .ok_or_else(|| self.err(format!("{what}: size overflow")))?;
                let (src, at) = self.take(bytes, what)?;
                let halves = &src.bytes()[at..at + bytes];
                let v = halves
                    .chunks_exact(2)
                    .map(|h| f16_to_f32(u16::from_le_bytes([h[0], h[1]])))
                    .collect();
                Ok(Tagged::F32(Floats::owned(v)))
            }
            TAG_INT8 => {
                let (src, offset) = self.take(n, what)?;
                Ok(Tagged::I8(Int8s::Borrowed {
                    src,
                    offset,
                    len: n,
                }))
            }
            _ if tag.to_le_bytes().iter().any(|&b| b != 0) => {
                // Legacy codebook: 256 floats, then one u8 index per element.
                let table = self.floats_at(256, &format!("{what} codebook"))?;
                let (src, at) = self.take(n, what)?;
                let v = src.bytes()[at..at + n]
                    .iter()
                    .map(|&i| table[i as usize])
                    .collect();
                Ok(Tagged::F32(Floats::owned(v)))
            }
            _ => unreachable!("tag 0 handled above"),
        }
    }

    /// Checks that the whole file was consumed (catches param/bin mismatches).
    pub fn finish(&self) -> Result<()> {
        match &self.src {
            Some(src) if self.pos != src.bytes().len() => Err(Error::Weights {
                file: self.file.clone(),
                layer: "(end)".into(),
                msg: format!(
                    "{} bytes left after the last layer's weights; the .bin does not match the .param",
                    src.bytes().len() - self.pos
                ),
            }),
            _ => Ok(()),
        }
    }
}

/// IEEE 754 half to single precision (exact; subnormals and infinities kept).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h as u32) & 0x8000) << 16;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal half: normalise into a single-precision normal.
            let shift = man.leading_zeros() - 21;
            let man = (man << shift) & 0x3ff;
            sign | ((113 - shift) << 23) | (man << 13)
        }
        (0x1f, _) => sign | 0x7f80_0000 | (man << 13),
        _ => sign | ((exp + 112) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

/// Single to half precision, round to nearest even (used by writers and tests).
pub fn f32_to_f16(f: f32) -> u16 {
    let x = f.to_bits();
    let sign = ((x >> 16) & 0x8000) as u16;
    let exp = ((x >> 23) & 0xff) as i32;
    let man = x & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if man != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = man | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = 1u32 << (shift - 1);
        let rest = m & ((1 << shift) - 1);
        let mut r = m >> shift;
        if rest > half || (rest == half && r & 1 == 1) {
            r += 1;
        }
        return sign | r as u16;
    }
    let mut r = ((e as u32) << 10) | (man >> 13);
    let rest = man & 0x1fff;
    if rest > 0x1000 || (rest == 0x1000 && r & 1 == 1) {
        r += 1;
    }
    sign | r as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_roundtrip_all_finite_halves() {
        for h in 0..=u16::MAX {
            let f = f16_to_f32(h);
            if f.is_nan() {
                assert!(f32_to_f16(f) & 0x7c00 == 0x7c00);
            } else {
                assert_eq!(f32_to_f16(f), h, "half {h:#06x} -> {f}");
            }
        }
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 1.0 / 16_777_216.0); // 2^-24, exact (powi need not be)
    }

    #[test]
    fn reads_tagged_blobs_and_detects_leftovers() {
        let mut b = Vec::new();
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&1.5f32.to_le_bytes());
        b.extend_from_slice(&TAG_FP16.to_le_bytes());
        b.extend_from_slice(&0x3c00u16.to_le_bytes());
        b.extend_from_slice(&[0, 0]);
        b.extend_from_slice(&TAG_INT8.to_le_bytes());
        b.extend_from_slice(&[0xff, 5, 0, 0]);
        b.extend_from_slice(&7u32.to_le_bytes());
        let mut r = WeightReader::new(Arc::new(Source::from_bytes(&b)), "w.bin");
        assert_eq!(&*r.tagged(1, "a").unwrap().into_f32().unwrap(), &[1.5]);
        assert_eq!(&*r.tagged(1, "b").unwrap().into_f32().unwrap(), &[1.0]);
        match r.tagged(2, "c").unwrap() {
            Tagged::I8(v) => assert_eq!(&*v, &[-1, 5]),
            other => panic!("{other:?}"),
        }
        let e = r.finish().unwrap_err().to_string();
        assert!(e.contains("4 bytes left"), "{e}");
        let e = r.raw(2, "bias").unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
    }
}
