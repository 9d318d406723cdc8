//! The binary `.param.bin` format written by ncnn2mem (ncnn-format.md §3). Layers are named by
//! registry index and blobs by number: blob `i` is called `"i"`, layer `j` is called `"layer{j}"`.

use super::param::{LayerRecord, ParamFile, MAGIC, MAX_COUNT, MAX_NAME};
use super::paramdict::{ParamDict, Value};
use crate::error::{Error, Result};

/// ncnn's built-in layer registry order (`src/CMakeLists.txt`), index = typeindex.
pub const LAYER_TYPES: &[&str] = &[
    "AbsVal",
    "ArgMax",
    "BatchNorm",
    "Bias",
    "BNLL",
    "Concat",
    "Convolution",
    "Crop",
    "Deconvolution",
    "Dropout",
    "Eltwise",
    "ELU",
    "Embed",
    "Exp",
    "Flatten",
    "InnerProduct",
    "Input",
    "Log",
    "LRN",
    "MemoryData",
    "MVN",
    "Pooling",
    "Power",
    "PReLU",
    "Proposal",
    "Reduction",
    "ReLU",
    "Reshape",
    "ROIPooling",
    "Scale",
    "Sigmoid",
    "Slice",
    "Softmax",
    "Split",
    "SPP",
    "TanH",
    "Threshold",
    "Tile",
    "RNN",
    "LSTM",
    "BinaryOp",
    "UnaryOp",
    "ConvolutionDepthWise",
    "Padding",
    "Squeeze",
    "ExpandDims",
    "Normalize",
    "Permute",
    "PriorBox",
    "DetectionOutput",
    "Interp",
    "DeconvolutionDepthWise",
    "ShuffleChannel",
    "InstanceNorm",
    "Clip",
    "Reorg",
    "YoloDetectionOutput",
    "Quantize",
    "Dequantize",
    "Yolov3DetectionOutput",
    "PSROIPooling",
    "ROIAlign",
    "Packing",
    "Requantize",
    "Cast",
    "HardSigmoid",
    "SELU",
    "HardSwish",
    "Noop",
    "PixelShuffle",
    "DeepCopy",
    "Mish",
    "StatisticsPooling",
    "Swish",
    "Gemm",
    "GroupNorm",
    "LayerNorm",
    "Softplus",
    "GRU",
    "MultiHeadAttention",
    "GELU",
    "Convolution1D",
    "Pooling1D",
    "ConvolutionDepthWise1D",
    "Convolution3D",
    "ConvolutionDepthWise3D",
    "Pooling3D",
    "MatMul",
    "Deconvolution1D",
    "DeconvolutionDepthWise1D",
    "Deconvolution3D",
    "DeconvolutionDepthWise3D",
    "Einsum",
    "DeformableConv2D",
    "GLU",
    "Fold",
    "Unfold",
    "GridSample",
    "CumulativeSum",
    "CopyTo",
    "Erf",
    "Diag",
    "CELU",
    "Shrink",
    "RMSNorm",
    "Spectrogram",
    "InverseSpectrogram",
    "Flip",
    "SDPA",
    "RotaryEmbed",
];

/// Registry index of a layer type name, for writers.
pub fn type_index(kind: &str) -> Option<usize> {
    LAYER_TYPES.iter().position(|&t| t == kind)
}

struct Words<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Words<'_> {
    fn word(&mut self) -> Option<u32> {
        let b = self.bytes.get(self.pos..self.pos + 4)?;
        self.pos += 4;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// Parses `.param.bin` contents.
pub fn parse_bin(bytes: &[u8], file: &str) -> Result<ParamFile> {
    let err = |line: usize, msg: String| Error::Param {
        file: file.to_string(),
        line,
        msg,
    };
    let mut w = Words { bytes, pos: 0 };
    let int = |w: &mut Words, line: usize, what: &str| -> Result<i32> {
        w.word()
            .map(|v| v as i32)
            .ok_or_else(|| err(line, format!("truncated at byte {}: missing {what}", w.pos)))
    };
    let magic = int(&mut w, 0, "magic")?;
    if magic != MAGIC {
        return Err(err(
            0,
            format!("wrong magic {magic} (expected {MAGIC}); not an ncnn param.bin"),
        ));
    }
    let layer_count = int(&mut w, 0, "layer count")?;
    let blob_count = int(&mut w, 0, "blob count")?;
    for (v, what) in [(layer_count, "layer count"), (blob_count, "blob count")] {
        if v <= 0 || v as usize > MAX_COUNT {
            return Err(err(0, format!("{what} {v} out of range 1..={MAX_COUNT}")));
        }
    }
    // Capacity from the data, not the header, so a lying header cannot reserve memory.
    let mut layers = Vec::with_capacity((layer_count as usize).min(bytes.len() / 16));
    for i in 0..layer_count as usize {
        let line = i + 1;
        let name = format!("layer{i}");
        let ty = int(&mut w, line, "layer type")?;
        let kind = usize::try_from(ty)
            .ok()
            .and_then(|t| LAYER_TYPES.get(t))
            .ok_or_else(|| err(line, format!("layer {i}: unknown layer type index {ty}")))?;
        let nb = int(&mut w, line, "input count")?;
        let nt = int(&mut w, line, "output count")?;
        let blob = |w: &mut Words| -> Result<String> {
            let b = int(w, line, "blob index")?;
            if b < 0 || b >= blob_count {
                return Err(err(
                    line,
                    format!("layer {i}: blob index {b} out of range 0..{blob_count}"),
                ));
            }
            Ok(b.to_string())
        };
        if !(0..=4096).contains(&nb) || !(0..=4096).contains(&nt) {
            return Err(err(line, format!("layer {i}: bad blob counts {nb} / {nt}")));
        }
        let bottoms = (0..nb).map(|_| blob(&mut w)).collect::<Result<Vec<_>>>()?;
        let tops = (0..nt).map(|_| blob(&mut w)).collect::<Result<Vec<_>>>()?;
        let mut params = ParamDict::new();
        loop {
            let id = int(&mut w, line, "parameter id")?;
            if id == -233 {
                break;
            }
            let (key, value) = if id <= -23400 {
                let len = int(&mut w, line, "string length")?;
                if !(0..=MAX_NAME as i32).contains(&len) {
                    return Err(err(
                        line,
                        format!("layer {i}: string length {len} out of range"),
                    ));
                }
                let padded = (len as usize).div_ceil(4) * 4;
                let s = w
                    .bytes
                    .get(w.pos..w.pos + padded)
                    .ok_or_else(|| err(line, format!("layer {i}: truncated string")))?;
                let s = String::from_utf8_lossy(&s[..len as usize]).into_owned();
                w.pos += padded;
                (-23400 - id as i64, Value::Str(s))
            } else if id <= -23300 {
                let len = int(&mut w, line, "array length")?;
                let remaining = (w.bytes.len() - w.pos) / 4;
                if len < 0 || len as usize > remaining {
                    return Err(err(
                        line,
                        format!("layer {i}: array length {len} exceeds the file"),
                    ));
                }
                let a = (0..len)
                    .map(|_| w.word().expect("length checked"))
                    .collect();
                (-23300 - id as i64, Value::RawArray(a))
            } else {
                let v = int(&mut w, line, "parameter value")?;
                (id as i64, Value::Raw(v as u32))
            };
            if !(0..32).contains(&key) {
                return Err(err(
                    line,
                    format!("layer {i}: parameter id {id} out of range"),
                ));
            }
            params
                .set(key as usize, value)
                .map_err(|e| err(line, e.0))?;
        }
        layers.push(LayerRecord {
            kind: kind.to_string(),
            name,
            bottoms,
            tops,
            params,
            line,
        });
    }
    // Like ncnn, bytes after the declared layers are not read.
    Ok(ParamFile {
        layers,
        blob_count: blob_count as usize,
    })
}
