//! A small `.npy` reader and writer for float32 arrays (the only dtype the tools exchange).
//!
//! Format (numpy's `format.py` docs): magic `\x93NUMPY`, version byte pair, header length
//! (u16 LE for 1.0, u32 LE for 2.0/3.0), then a Python dict literal
//! `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }` padded with spaces and a
//! newline so the data starts at a multiple of 64 bytes, then the raw little-endian data.

use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;

const MAGIC: &[u8] = b"\x93NUMPY";

/// A float32 array in C order; `dims` outermost first, as numpy prints `shape`.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    pub dims: Vec<usize>,
    pub data: Vec<f32>,
}

/// Reads a float32 `.npy` file; every error names the file.
pub fn read(path: &Path) -> Result<Array> {
    let bytes = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
    parse(&bytes).with_context(|| format!("{}", path.display()))
}

/// Writes `data` with shape `dims` as a version 1.0 (or 2.0 for huge headers) `.npy` file.
pub fn write(path: &Path, dims: &[usize], data: &[f32]) -> Result<()> {
    let bytes = to_bytes(dims, data).with_context(|| format!("{}", path.display()))?;
    std::fs::write(path, bytes).with_context(|| format!("{}", path.display()))
}

/// Serialises an array; fails when the shape does not hold exactly `data.len()` values.
pub fn to_bytes(dims: &[usize], data: &[f32]) -> Result<Vec<u8>> {
    let count = element_count(dims)?;
    if count != data.len() {
        bail!(
            "shape {} holds {count} values but {} were given",
            shape_text(dims),
            data.len()
        );
    }
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': {}, }}",
        shape_text(dims)
    );
    // Version 1.0 has a u16 length field; fall back to 2.0 only when it would overflow.
    let (version, len_bytes) = if header.len() + 1 + 10 <= u16::MAX as usize {
        (1u8, 2)
    } else {
        (2u8, 4)
    };
    let prefix = MAGIC.len() + 2 + len_bytes;
    let total = (prefix + header.len() + 1).div_ceil(64) * 64;
    while prefix + header.len() + 1 < total {
        header.push(' ');
    }
    header.push('\n');

    let mut out = Vec::with_capacity(total + 4 * data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[version, 0]);
    if version == 1 {
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    Ok(out)
}

/// Parses the bytes of a `.npy` file.
pub fn parse(bytes: &[u8]) -> Result<Array> {
    if bytes.len() < MAGIC.len() + 2 || &bytes[..MAGIC.len()] != MAGIC {
        bail!("not a .npy file (bad magic; expected \\x93NUMPY)");
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let len_bytes = match major {
        1 => 2,
        2 | 3 => 4,
        _ => bail!("unsupported .npy version {major}.{minor} (1.0, 2.0 and 3.0 are read)"),
    };
    let start = 8 + len_bytes;
    if bytes.len() < start {
        bail!("truncated .npy header");
    }
    let header_len = if len_bytes == 2 {
        u16::from_le_bytes([bytes[8], bytes[9]]) as usize
    } else {
        u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize
    };
    let data_start = start
        .checked_add(header_len)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| anyhow!("truncated .npy header ({header_len} bytes announced)"))?;
    let header = std::str::from_utf8(&bytes[start..data_start])
        .map_err(|_| anyhow!("the .npy header is not valid text"))?;
    let h = parse_header(header)?;

    if h.descr != "<f4" {
        bail!(
            "dtype '{}' is not supported: only little-endian float32 ('<f4'); \
             convert with a.astype(numpy.float32)",
            h.descr
        );
    }
    if h.fortran_order {
        bail!("Fortran-order arrays are not supported; save numpy.ascontiguousarray(a)");
    }
    let count = element_count(&h.shape)?;
    let need = count
        .checked_mul(4)
        .ok_or_else(|| anyhow!("shape {} is too large", shape_text(&h.shape)))?;
    let have = bytes.len() - data_start;
    if have < need {
        bail!(
            "truncated data: shape {} needs {need} bytes, the file has {have}",
            shape_text(&h.shape)
        );
    }
    if have > need {
        bail!(
            "{} unexpected bytes after the data of shape {}",
            have - need,
            shape_text(&h.shape)
        );
    }
    let data = bytes[data_start..]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok(Array {
        dims: h.shape,
        data,
    })
}

fn element_count(dims: &[usize]) -> Result<usize> {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| anyhow!("shape {} is too large", shape_text(dims)))
}

/// numpy's spelling of a shape tuple: `(3,)`, `(2, 3)`, `()`.
pub fn shape_text(dims: &[usize]) -> String {
    match dims {
        [d] => format!("({d},)"),
        _ => {
            let parts: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
            format!("({})", parts.join(", "))
        }
    }
}

struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// Parses the header dict: string keys, values that are strings, booleans or int tuples.
fn parse_header(text: &str) -> Result<Header> {
    let bad = |what: &str| anyhow!("malformed .npy header ({what}): {}", text.trim_end());
    let mut p = Cursor {
        s: text.as_bytes(),
        i: 0,
    };
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    p.skip_ws();
    if !p.eat(b'{') {
        return Err(bad("expected `{`"));
    }
    loop {
        p.skip_ws();
        if p.eat(b'}') {
            break;
        }
        let key = p.string().ok_or_else(|| bad("expected a quoted key"))?;
        p.skip_ws();
        if !p.eat(b':') {
            return Err(bad("expected `:`"));
        }
        p.skip_ws();
        match key.as_str() {
            "descr" => descr = Some(p.string().ok_or_else(|| bad("descr"))?),
            "fortran_order" => fortran = Some(p.boolean().ok_or_else(|| bad("fortran_order"))?),
            "shape" => shape = Some(p.tuple().ok_or_else(|| bad("shape"))?),
            other => return Err(bad(&format!("unknown key '{other}'"))),
        }
        p.skip_ws();
        if !p.eat(b',') {
            p.skip_ws();
            if !p.eat(b'}') {
                return Err(bad("expected `,` or `}`"));
            }
            break;
        }
    }
    Ok(Header {
        descr: descr.ok_or_else(|| bad("no 'descr'"))?,
        fortran_order: fortran.ok_or_else(|| bad("no 'fortran_order'"))?,
        shape: shape.ok_or_else(|| bad("no 'shape'"))?,
    })
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn skip_ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn string(&mut self) -> Option<String> {
        let q = *self.s.get(self.i)?;
        if q != b'\'' && q != b'"' {
            return None;
        }
        let start = self.i + 1;
        let len = self.s[start..].iter().position(|&c| c == q)?;
        self.i = start + len + 1;
        String::from_utf8(self.s[start..start + len].to_vec()).ok()
    }
    fn boolean(&mut self) -> Option<bool> {
        for (word, v) in [(&b"True"[..], true), (&b"False"[..], false)] {
            if self.s[self.i..].starts_with(word) {
                self.i += word.len();
                return Some(v);
            }
        }
        None
    }
    fn tuple(&mut self) -> Option<Vec<usize>> {
        if !self.eat(b'(') {
            return None;
        }
        let mut dims = Vec::new();
        loop {
            self.skip_ws();
            if self.eat(b')') {
                return Some(dims);
            }
            let start = self.i;
            while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
                self.i += 1;
            }
            // Python 2 era files may spell sizes as `3L`.
            let digits = std::str::from_utf8(&self.s[start..self.i]).ok()?;
            dims.push(digits.parse().ok()?);
            self.eat(b'L');
            self.skip_ws();
            if !self.eat(b',') {
                self.skip_ws();
                return self.eat(b')').then_some(dims);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_header(version: u8, header: &str, data: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[version, 0]);
        if version == 1 {
            out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        } else {
            out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        }
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    fn floats(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn err(bytes: &[u8]) -> String {
        format!("{:#}", parse(bytes).unwrap_err())
    }

    #[test]
    fn round_trip_every_rank() {
        for dims in [vec![], vec![5], vec![2, 3], vec![3, 4, 5], vec![2, 1, 3, 2]] {
            let n: usize = dims.iter().product();
            let data: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 1.0).collect();
            let bytes = to_bytes(&dims, &data).unwrap();
            assert_eq!(bytes[6], 1, "version 1.0");
            let header_end = 10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
            assert_eq!(header_end % 64, 0, "data is 64-byte aligned");
            assert_eq!(bytes[header_end - 1], b'\n');
            assert_eq!(parse(&bytes).unwrap(), Array { dims, data });
        }
    }

    #[test]
    fn header_matches_numpy_spelling() {
        let bytes = to_bytes(&[3], &[1.0, 2.0, 3.0]).unwrap();
        let text = std::str::from_utf8(&bytes[10..128]).unwrap();
        assert!(text.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }"));
    }

    #[test]
    fn reads_version_2_and_3_and_loose_spelling() {
        let data = floats(&[1.5, -2.0]);
        for v in [2, 3] {
            let h = "{\"descr\":\"<f4\",\"fortran_order\":False,\"shape\":(1,2)}\n";
            let a = parse(&with_header(v, h, &data)).unwrap();
            assert_eq!(a.dims, vec![1, 2]);
            assert_eq!(a.data, vec![1.5, -2.0]);
        }
        let h = "{'shape': (2L,), 'fortran_order': False, 'descr': '<f4'}";
        assert_eq!(parse(&with_header(1, h, &data)).unwrap().dims, vec![2]);
    }

    #[test]
    fn file_round_trip_and_errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("eq-npy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.npy");
        write(&path, &[2, 2], &[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(read(&path).unwrap().data, vec![1.0, 2.0, 3.0, 4.0]);
        std::fs::write(&path, b"hello").unwrap();
        let e = format!("{:#}", read(&path).unwrap_err());
        assert!(e.contains("x.npy") && e.contains("bad magic"), "{e}");
        let e = format!("{:#}", read(&dir.join("missing.npy")).unwrap_err());
        assert!(e.contains("missing.npy"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rejects_other_dtypes() {
        for (descr, size) in [("<f8", 8), ("|u1", 1), (">f4", 4), ("<f2", 2), ("<i4", 4)] {
            let h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': (2,), }}");
            let e = err(&with_header(1, &h, &vec![0u8; 2 * size]));
            assert!(e.contains(descr) && e.contains("float32"), "{e}");
        }
    }

    #[test]
    fn rejects_fortran_order() {
        let h = "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }";
        let e = err(&with_header(1, h, &floats(&[0.0; 4])));
        assert!(e.contains("Fortran"), "{e}");
    }

    #[test]
    fn rejects_truncated_and_oversized_data() {
        let h = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
        let e = err(&with_header(1, h, &floats(&[0.0; 5])));
        assert!(
            e.contains("truncated data") && e.contains("24 bytes"),
            "{e}"
        );
        let e = err(&with_header(1, h, &floats(&[0.0; 7])));
        assert!(e.contains("4 unexpected bytes"), "{e}");
    }

    #[test]
    fn rejects_bad_magic_version_and_header() {
        assert!(err(b"").contains("bad magic"));
        assert!(err(b"\x93NUMPZ\x01\x00").contains("bad magic"));
        assert!(err(b"\x93NUMPY\x04\x00\x00\x00").contains("version 4.0"));
        assert!(err(b"\x93NUMPY\x01\x00\xff\x00{").contains("truncated .npy header"));
        let e = err(&with_header(
            1,
            "{'descr': '<f4', 'shape': (2,)}",
            &floats(&[0.0; 2]),
        ));
        assert!(e.contains("no 'fortran_order'"), "{e}");
        let e = err(&with_header(1, "{'descr': '<f4', 'shape': (a,)}", &[]));
        assert!(e.contains("malformed"), "{e}");
    }

    #[test]
    fn writer_checks_shape_against_length() {
        let e = format!("{:#}", to_bytes(&[2, 3], &[0.0; 5]).unwrap_err());
        assert!(e.contains("(2, 3) holds 6 values but 5 were given"), "{e}");
    }
}
