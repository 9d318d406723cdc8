//! `.npy` files of float32 arrays (the only dtype the tools exchange), through `npyz`.

use anyhow::{anyhow, bail, Context, Result};
use npyz::WriterBuilder;
use std::path::Path;

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
    let shape: Vec<u64> = dims.iter().map(|&d| d as u64).collect();
    let mut out = Vec::with_capacity(128 + 4 * data.len());
    let mut writer = npyz::WriteOptions::<f32>::new()
        .default_dtype()
        .shape(&shape)
        .writer(&mut out)
        .begin_nd()?;
    writer.extend(data.iter().copied())?;
    writer.finish()?;
    Ok(out)
}

/// Parses the bytes of a `.npy` file (the header by `npyz`; the data checked here, so a
/// truncated or padded file is an error rather than a short or silently cut array).
pub fn parse(bytes: &[u8]) -> Result<Array> {
    if !bytes.starts_with(b"\x93NUMPY") {
        bail!("not a .npy file (bad magic; expected \\x93NUMPY)");
    }
    let file = npyz::NpyFile::new(bytes).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => anyhow!("truncated .npy header"),
        _ => anyhow!("not a valid .npy file: {e}"),
    })?;
    let descr = file.dtype().descr();
    if descr != "'<f4'" {
        bail!(
            "dtype {descr} is not supported: only little-endian float32 ('<f4'); \
             convert with a.astype(numpy.float32)"
        );
    }
    if file.order() == npyz::Order::Fortran {
        bail!("Fortran-order arrays are not supported; save numpy.ascontiguousarray(a)");
    }
    let dims = file
        .shape()
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| anyhow!("dimension {d} is too large")))
        .collect::<Result<Vec<usize>>>()?;
    let count = element_count(&dims)?;
    let need = count
        .checked_mul(4)
        .ok_or_else(|| anyhow!("shape {} is too large", shape_text(&dims)))?;
    let raw = file.into_inner();
    let have = raw.len();
    if have < need {
        bail!(
            "truncated data: shape {} needs {need} bytes, the file has {have}",
            shape_text(&dims)
        );
    }
    if have > need {
        bail!(
            "{} unexpected bytes after the data of shape {}",
            have - need,
            shape_text(&dims)
        );
    }
    let data = raw
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok(Array { dims, data })
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

#[cfg(test)]
mod tests {
    use super::*;

    const MAGIC: &[u8] = b"\x93NUMPY";

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
        // npyz spells a 1-tuple `(3, )`, which Python (and numpy.load) reads as `(3,)`.
        assert!(text.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (3, ), }"));
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
        let h = "{'shape': (2,), 'fortran_order': False, 'descr': '<f4'}";
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
        assert!(err(b"\x93NUMPY\x04\x00\x00\x00").contains("unsupported version: (4, 0)"));
        assert!(err(b"\x93NUMPY\x01\x00\xff\x00{").contains("truncated .npy header"));
        let e = err(&with_header(
            1,
            "{'descr': '<f4', 'shape': (2,)}",
            &floats(&[0.0; 2]),
        ));
        assert!(e.contains("missing key 'fortran_order'"), "{e}");
        let e = err(&with_header(1, "{'descr': '<f4', 'shape': (a,)}", &[]));
        assert!(
            e.contains("not a valid .npy file") && e.contains("syntax error"),
            "{e}"
        );
    }

    #[test]
    fn writer_checks_shape_against_length() {
        let e = format!("{:#}", to_bytes(&[2, 3], &[0.0; 5]).unwrap_err());
        assert!(e.contains("(2, 3) holds 6 values but 5 were given"), "{e}");
    }
}
