//! Reading ncnn model files: `.param` (text), `.param.bin` (binary) and `.bin` weights.

pub mod param;
pub mod param_bin;
pub mod paramdict;
pub mod weights;

use crate::error::{Error, Result};
use param::ParamFile;
use std::path::Path;

/// Parses param bytes, text or binary, recognised by the magic number's encoding.
pub fn parse_param(bytes: &[u8], file: &str) -> Result<ParamFile> {
    if bytes.len() >= 4
        && i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) == param::MAGIC
    {
        return param_bin::parse_bin(bytes, file);
    }
    let text = std::str::from_utf8(bytes).map_err(|e| Error::Param {
        file: file.to_string(),
        line: 0,
        msg: format!(
            "neither a text param (invalid UTF-8 at byte {}) nor a param.bin (wrong magic)",
            e.valid_up_to()
        ),
    })?;
    param::parse_text(text, file)
}

/// Reads and parses a `.param` or `.param.bin` file.
pub fn read_param(path: &Path) -> Result<ParamFile> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io {
        path: path.display().to_string(),
        msg: e.to_string(),
    })?;
    parse_param(&bytes, &path.display().to_string())
}
