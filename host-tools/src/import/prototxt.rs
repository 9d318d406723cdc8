//! A reader of protobuf text format (Caffe's `.prototxt`) for the `caffe_proto` subset.
//!
//! The text is parsed against a small schema (field name -> number and kind) and re-encoded
//! as protobuf wire bytes, which prost then decodes into the same structs as a binary
//! `.caffemodel`. So the two files go through one decoder, and the schema below only has to
//! agree with `caffe_proto.rs` on names and numbers (the tests check that it does). Fields
//! outside the subset (fillers, `param { lr_mult }`, engines...) are skipped: they do not
//! change inference. Errors carry `line:column`.

use super::caffe_proto::NetParameter;
use anyhow::{anyhow, bail, Result};
use prost::Message;

#[derive(Clone, Copy)]
enum Kind {
    Int,
    UInt,
    Bool,
    Float,
    Str,
    Enum(&'static [(&'static str, i32)]),
    Msg(&'static Schema),
}

struct Field {
    name: &'static str,
    tag: u32,
    kind: Kind,
}

struct Schema {
    fields: &'static [Field],
}

const fn f(name: &'static str, tag: u32, kind: Kind) -> Field {
    Field { name, tag, kind }
}

use Kind::{Bool, Float, Int, Str, UInt};

static BLOB_SHAPE: Schema = Schema {
    fields: &[f("dim", 1, Int)],
};
static BLOB: Schema = Schema {
    fields: &[
        f("num", 1, Int),
        f("channels", 2, Int),
        f("height", 3, Int),
        f("width", 4, Int),
        f("data", 5, Float),
        f("shape", 7, Kind::Msg(&BLOB_SHAPE)),
    ],
};
const PHASES: &[(&str, i32)] = &[("TRAIN", 0), ("TEST", 1)];
static RULE: Schema = Schema {
    fields: &[f("phase", 1, Kind::Enum(PHASES))],
};
static CONV: Schema = Schema {
    fields: &[
        f("num_output", 1, UInt),
        f("bias_term", 2, Bool),
        f("pad", 3, UInt),
        f("kernel_size", 4, UInt),
        f("group", 5, UInt),
        f("stride", 6, UInt),
        f("pad_h", 9, UInt),
        f("pad_w", 10, UInt),
        f("kernel_h", 11, UInt),
        f("kernel_w", 12, UInt),
        f("stride_h", 13, UInt),
        f("stride_w", 14, UInt),
        f("axis", 16, Int),
        f("dilation", 18, UInt),
    ],
};
static POOL: Schema = Schema {
    fields: &[
        f(
            "pool",
            1,
            Kind::Enum(&[("MAX", 0), ("AVE", 1), ("STOCHASTIC", 2)]),
        ),
        f("kernel_size", 2, UInt),
        f("stride", 3, UInt),
        f("pad", 4, UInt),
        f("kernel_h", 5, UInt),
        f("kernel_w", 6, UInt),
        f("stride_h", 7, UInt),
        f("stride_w", 8, UInt),
        f("pad_h", 9, UInt),
        f("pad_w", 10, UInt),
        f("global_pooling", 12, Bool),
        f("round_mode", 13, Kind::Enum(&[("CEIL", 0), ("FLOOR", 1)])),
    ],
};
static INNER_PRODUCT: Schema = Schema {
    fields: &[
        f("num_output", 1, UInt),
        f("bias_term", 2, Bool),
        f("axis", 5, Int),
        f("transpose", 6, Bool),
    ],
};
static LRN: Schema = Schema {
    fields: &[
        f("local_size", 1, UInt),
        f("alpha", 2, Float),
        f("beta", 3, Float),
        f(
            "norm_region",
            4,
            Kind::Enum(&[("ACROSS_CHANNELS", 0), ("WITHIN_CHANNEL", 1)]),
        ),
        f("k", 5, Float),
    ],
};
static CONCAT: Schema = Schema {
    fields: &[f("concat_dim", 1, UInt), f("axis", 2, Int)],
};
static ELTWISE: Schema = Schema {
    fields: &[
        f(
            "operation",
            1,
            Kind::Enum(&[("PROD", 0), ("SUM", 1), ("MAX", 2)]),
        ),
        f("coeff", 2, Float),
    ],
};
static BATCH_NORM: Schema = Schema {
    fields: &[f("use_global_stats", 1, Bool), f("eps", 3, Float)],
};
static SCALE: Schema = Schema {
    fields: &[
        f("axis", 1, Int),
        f("num_axes", 2, Int),
        f("bias_term", 4, Bool),
    ],
};
static PRELU: Schema = Schema {
    fields: &[f("channel_shared", 2, Bool)],
};
static RELU: Schema = Schema {
    fields: &[f("negative_slope", 1, Float)],
};
static SOFTMAX: Schema = Schema {
    fields: &[f("axis", 2, Int)],
};
static DROPOUT: Schema = Schema {
    fields: &[f("dropout_ratio", 1, Float), f("scale_train", 2, Bool)],
};
static FLATTEN: Schema = Schema {
    fields: &[f("axis", 1, Int), f("end_axis", 2, Int)],
};
static PERMUTE: Schema = Schema {
    fields: &[f("order", 1, UInt)],
};
static PRIOR_BOX: Schema = Schema {
    fields: &[
        f("min_size", 1, Float),
        f("max_size", 2, Float),
        f("aspect_ratio", 3, Float),
        f("flip", 4, Bool),
        f("clip", 5, Bool),
        f("variance", 6, Float),
        f("img_size", 7, UInt),
        f("img_h", 8, UInt),
        f("img_w", 9, UInt),
        f("step", 10, Float),
        f("step_h", 11, Float),
        f("step_w", 12, Float),
        f("offset", 13, Float),
    ],
};
static NMS: Schema = Schema {
    fields: &[f("nms_threshold", 1, Float), f("top_k", 2, Int)],
};
static DETECTION_OUTPUT: Schema = Schema {
    fields: &[
        f("num_classes", 1, UInt),
        f("share_location", 2, Bool),
        f("background_label_id", 3, Int),
        f("nms_param", 4, Kind::Msg(&NMS)),
        f(
            "code_type",
            6,
            Kind::Enum(&[("CORNER", 1), ("CENTER_SIZE", 2), ("CORNER_SIZE", 3)]),
        ),
        f("keep_top_k", 7, Int),
        f("variance_encoded_in_target", 8, Bool),
        f("confidence_threshold", 9, Float),
    ],
};
static NORMALIZE: Schema = Schema {
    fields: &[
        f("across_spatial", 1, Bool),
        f("channel_shared", 3, Bool),
        f("eps", 4, Float),
    ],
};
static RESHAPE: Schema = Schema {
    fields: &[
        f("shape", 1, Kind::Msg(&BLOB_SHAPE)),
        f("axis", 2, Int),
        f("num_axes", 3, Int),
    ],
};
static INPUT: Schema = Schema {
    fields: &[f("shape", 1, Kind::Msg(&BLOB_SHAPE))],
};
static LAYER: Schema = Schema {
    fields: &[
        f("name", 1, Str),
        f("type", 2, Str),
        f("bottom", 3, Str),
        f("top", 4, Str),
        f("blobs", 7, Kind::Msg(&BLOB)),
        f("include", 8, Kind::Msg(&RULE)),
        f("exclude", 9, Kind::Msg(&RULE)),
        f("concat_param", 104, Kind::Msg(&CONCAT)),
        f("convolution_param", 106, Kind::Msg(&CONV)),
        f("dropout_param", 108, Kind::Msg(&DROPOUT)),
        f("eltwise_param", 110, Kind::Msg(&ELTWISE)),
        f("inner_product_param", 117, Kind::Msg(&INNER_PRODUCT)),
        f("lrn_param", 118, Kind::Msg(&LRN)),
        f("pooling_param", 121, Kind::Msg(&POOL)),
        f("relu_param", 123, Kind::Msg(&RELU)),
        f("softmax_param", 125, Kind::Msg(&SOFTMAX)),
        f("prelu_param", 131, Kind::Msg(&PRELU)),
        f("reshape_param", 133, Kind::Msg(&RESHAPE)),
        f("flatten_param", 135, Kind::Msg(&FLATTEN)),
        f("batch_norm_param", 139, Kind::Msg(&BATCH_NORM)),
        f("scale_param", 142, Kind::Msg(&SCALE)),
        f("input_param", 143, Kind::Msg(&INPUT)),
        f("permute_param", 202, Kind::Msg(&PERMUTE)),
        f("prior_box_param", 203, Kind::Msg(&PRIOR_BOX)),
        f("detection_output_param", 204, Kind::Msg(&DETECTION_OUTPUT)),
        f("norm_param", 206, Kind::Msg(&NORMALIZE)),
    ],
};
/// `V1LayerParameter.LayerType` names, from the same table the importer maps them with.
static V1_TYPES: std::sync::LazyLock<&'static [(&'static str, i32)]> =
    std::sync::LazyLock::new(|| {
        let v: Vec<(&'static str, i32)> = super::caffe_proto::V1_LAYER_TYPES
            .iter()
            .map(|&(name, n, _)| (name, n))
            .collect();
        Box::leak(v.into_boxed_slice())
    });
static V1_LAYER: Schema = Schema {
    fields: &[
        f("bottom", 2, Str),
        f("top", 3, Str),
        f("name", 4, Str),
        // The enum table is filled in at lookup time (see `field_kind`).
        f("type", 5, Kind::Enum(&[])),
        f("blobs", 6, Kind::Msg(&BLOB)),
        f("concat_param", 9, Kind::Msg(&CONCAT)),
        f("convolution_param", 10, Kind::Msg(&CONV)),
        f("dropout_param", 12, Kind::Msg(&DROPOUT)),
        f("inner_product_param", 17, Kind::Msg(&INNER_PRODUCT)),
        f("lrn_param", 18, Kind::Msg(&LRN)),
        f("pooling_param", 19, Kind::Msg(&POOL)),
        f("eltwise_param", 24, Kind::Msg(&ELTWISE)),
        f("relu_param", 30, Kind::Msg(&RELU)),
        f("include", 32, Kind::Msg(&RULE)),
        f("exclude", 33, Kind::Msg(&RULE)),
        f("softmax_param", 39, Kind::Msg(&SOFTMAX)),
    ],
};
static NET: Schema = Schema {
    fields: &[
        f("name", 1, Str),
        f("layers", 2, Kind::Msg(&V1_LAYER)),
        f("input", 3, Str),
        f("input_dim", 4, Int),
        f("input_shape", 8, Kind::Msg(&BLOB_SHAPE)),
        f("layer", 100, Kind::Msg(&LAYER)),
    ],
};

fn field_kind(schema: &Schema, field: &Field) -> Kind {
    if std::ptr::eq(schema, &V1_LAYER) && field.tag == 5 {
        Kind::Enum(*V1_TYPES)
    } else {
        field.kind
    }
}

/// Parses a prototxt into a `NetParameter`.
pub fn parse(text: &str) -> Result<NetParameter> {
    let mut p = Parser::new(text);
    let bytes = p.message(&NET, None)?;
    NetParameter::decode(bytes.as_slice())
        .map_err(|e| anyhow!("the parsed text does not decode as a NetParameter: {e}"))
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Num(String),
    Str(String),
    Punct(char),
}

struct Parser<'a> {
    src: &'a [u8],
    pos: usize,
    line: usize,
    col: usize,
    /// The next token and where it starts, once peeked.
    peeked: Option<(Tok, usize, usize)>,
    /// Nesting of `{ }` blocks, bounded so hostile text cannot exhaust the stack.
    depth: usize,
}

/// Deepest block nesting accepted (Caffe's messages nest 4 deep).
const MAX_DEPTH: usize = 64;

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Parser<'a> {
        Parser {
            src: text.as_bytes(),
            pos: 0,
            line: 1,
            col: 1,
            peeked: None,
            depth: 0,
        }
    }

    fn bump(&mut self) -> Option<u8> {
        let c = *self.src.get(self.pos)?;
        self.pos += 1;
        if c == b'\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    fn skip_space(&mut self) {
        while let Some(&c) = self.src.get(self.pos) {
            if c == b'#' {
                while self.bump().is_some_and(|c| c != b'\n') {}
            } else if c.is_ascii_whitespace() {
                self.bump();
            } else {
                break;
            }
        }
    }

    /// Reads one token (None at the end of the text) and where it starts.
    fn lex(&mut self) -> Result<Option<(Tok, usize, usize)>> {
        self.skip_space();
        let (line, col) = (self.line, self.col);
        let Some(&c) = self.src.get(self.pos) else {
            return Ok(None);
        };
        let word = |p: &mut Parser, first: u8| {
            let mut s = String::from(first as char);
            while let Some(&c) = p.src.get(p.pos) {
                if c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'+' | b'-') {
                    s.push(c as char);
                    p.bump();
                } else {
                    break;
                }
            }
            s
        };
        let tok = if c.is_ascii_alphabetic() || c == b'_' {
            self.bump();
            let w = word(self, c);
            Tok::Ident(w)
        } else if c.is_ascii_digit() || c == b'-' || c == b'.' || c == b'+' {
            self.bump();
            Tok::Num(word(self, c))
        } else if c == b'"' || c == b'\'' {
            self.bump();
            let mut bytes = Vec::new();
            loop {
                match self.bump() {
                    None | Some(b'\n') => {
                        bail!("{line}:{col}: unterminated string")
                    }
                    Some(q) if q == c => break,
                    Some(b'\\') => match self.bump() {
                        Some(b'n') => bytes.push(b'\n'),
                        Some(b't') => bytes.push(b'\t'),
                        Some(e @ (b'\\' | b'"' | b'\'')) => bytes.push(e),
                        _ => bail!("{}:{}: unsupported escape in string", self.line, self.col),
                    },
                    Some(b) => bytes.push(b),
                }
            }
            Tok::Str(
                String::from_utf8(bytes)
                    .map_err(|_| anyhow!("{line}:{col}: string is not UTF-8"))?,
            )
        } else if b"{}<>:,;[]".contains(&c) {
            self.bump();
            Tok::Punct(c as char)
        } else {
            bail!(
                "{line}:{col}: unexpected character `{}`",
                (c as char).escape_default()
            );
        };
        Ok(Some((tok, line, col)))
    }

    fn peek(&mut self) -> Result<Option<&(Tok, usize, usize)>> {
        if self.peeked.is_none() {
            self.peeked = self.lex()?;
        }
        Ok(self.peeked.as_ref())
    }

    fn next(&mut self) -> Result<Option<(Tok, usize, usize)>> {
        self.peek()?;
        Ok(self.peeked.take())
    }

    fn at(&self) -> String {
        format!("{}:{}", self.line, self.col)
    }

    /// Fields until `close` (or the end of the text for the top level), as wire bytes.
    /// `schema` None: a message outside the subset, parsed and dropped.
    fn message(&mut self, schema: &Schema, close: Option<char>) -> Result<Vec<u8>> {
        self.message_in(Some(schema), close)
    }

    fn message_in(&mut self, schema: Option<&Schema>, close: Option<char>) -> Result<Vec<u8>> {
        if self.depth >= MAX_DEPTH {
            bail!("{}: blocks nested more than {MAX_DEPTH} deep", self.at());
        }
        self.depth += 1;
        let out = self.fields(schema, close);
        self.depth -= 1;
        out
    }

    fn fields(&mut self, schema: Option<&Schema>, close: Option<char>) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let Some((tok, line, col)) = self.next()? else {
                if let Some(c) = close {
                    bail!("{}: missing `{c}` at the end of the text", self.at());
                }
                return Ok(out);
            };
            let name = match tok {
                Tok::Punct(c) if Some(c) == close => return Ok(out),
                Tok::Punct(';' | ',') => continue,
                Tok::Ident(name) => name,
                other => bail!(
                    "{line}:{col}: expected a field name, found {}",
                    show(&other)
                ),
            };
            let field = schema.and_then(|s| s.fields.iter().find(|f| f.name == name));
            let kind = match (schema, field) {
                (Some(s), Some(fl)) => Some(field_kind(s, fl)),
                _ => None,
            };
            let tag = field.map_or(0, |f| f.tag);
            // `name: value`, `name { }`, `name: { }`, `name < >`, `name: [v, v]`.
            let colon = matches!(self.peek()?, Some((Tok::Punct(':'), ..)));
            if colon {
                self.next()?;
            }
            match self.peek()? {
                Some((Tok::Punct(open @ ('{' | '<')), ..)) => {
                    let closing = if *open == '{' { '}' } else { '>' };
                    self.next()?;
                    match kind {
                        Some(Kind::Msg(sub)) => {
                            let body = self.message(sub, Some(closing))?;
                            put_key(&mut out, tag, 2);
                            put_varint(&mut out, body.len() as u64);
                            out.extend_from_slice(&body);
                        }
                        Some(_) => bail!("{line}:{col}: field `{name}` takes a value, not a block"),
                        None => {
                            self.message_in(None, Some(closing))?;
                        }
                    }
                }
                Some((Tok::Punct('['), ..)) if colon => {
                    self.next()?;
                    loop {
                        if matches!(self.peek()?, Some((Tok::Punct(']'), ..))) {
                            self.next()?;
                            break;
                        }
                        self.scalar(&mut out, &name, tag, kind)?;
                        match self.next()? {
                            Some((Tok::Punct(','), ..)) => {}
                            Some((Tok::Punct(']'), ..)) => break,
                            _ => {
                                bail!("{}: expected `,` or `]` in the list of `{name}`", self.at())
                            }
                        }
                    }
                }
                _ if colon => self.scalar(&mut out, &name, tag, kind)?,
                _ => bail!("{line}:{col}: expected `:` or `{{` after `{name}`"),
            }
        }
    }

    /// One scalar value of field `name`, appended to `out` (nothing for unknown fields).
    fn scalar(
        &mut self,
        out: &mut Vec<u8>,
        name: &str,
        tag: u32,
        kind: Option<Kind>,
    ) -> Result<()> {
        let Some((tok, line, col)) = self.next()? else {
            bail!("{}: missing the value of `{name}`", self.at());
        };
        let at = format!("{line}:{col}");
        // Adjacent string literals concatenate.
        let tok = match tok {
            Tok::Str(mut s) => {
                while let Some((Tok::Str(_), ..)) = self.peek()? {
                    if let Some((Tok::Str(more), ..)) = self.next()? {
                        s.push_str(&more);
                    }
                }
                Tok::Str(s)
            }
            t => t,
        };
        let Some(kind) = kind else {
            return match tok {
                Tok::Punct(_) => bail!("{at}: bad value {} for `{name}`", show(&tok)),
                _ => Ok(()),
            };
        };
        let bad = |what: &str| anyhow!("{at}: `{name}` wants {what}, found {}", show(&tok));
        match kind {
            Kind::Int | Kind::UInt => {
                let Tok::Num(t) = &tok else {
                    return Err(bad("an integer"));
                };
                let v = parse_int(t).ok_or_else(|| bad("an integer"))?;
                if matches!(kind, Kind::UInt) && v < 0 {
                    return Err(bad("a non-negative integer"));
                }
                put_key(out, tag, 0);
                put_varint(out, v as u64);
            }
            Kind::Bool => {
                let v = match &tok {
                    Tok::Ident(t) if t == "true" || t == "True" || t == "t" => 1,
                    Tok::Ident(t) if t == "false" || t == "False" || t == "f" => 0,
                    Tok::Num(t) if t == "1" => 1,
                    Tok::Num(t) if t == "0" => 0,
                    _ => return Err(bad("true or false")),
                };
                put_key(out, tag, 0);
                put_varint(out, v);
            }
            Kind::Float => {
                let v = match &tok {
                    Tok::Num(t) | Tok::Ident(t) => parse_float(t),
                    _ => None,
                }
                .ok_or_else(|| bad("a number"))?;
                put_key(out, tag, 5);
                out.extend_from_slice(&v.to_le_bytes());
            }
            Kind::Str => {
                let Tok::Str(s) = &tok else {
                    return Err(bad("a quoted string"));
                };
                put_key(out, tag, 2);
                put_varint(out, s.len() as u64);
                out.extend_from_slice(s.as_bytes());
            }
            Kind::Enum(values) => {
                let v = match &tok {
                    Tok::Ident(t) => values.iter().find(|(n, _)| n == t).map(|&(_, v)| v as i64),
                    Tok::Num(t) => parse_int(t),
                    _ => None,
                }
                .ok_or_else(|| {
                    let names: Vec<&str> = values.iter().map(|(n, _)| *n).collect();
                    bad(&format!("one of {}", names.join(", ")))
                })?;
                put_key(out, tag, 0);
                put_varint(out, v as u64);
            }
            Kind::Msg(_) => return Err(bad("a `{ ... }` block")),
        }
        Ok(())
    }
}

fn show(t: &Tok) -> String {
    match t {
        Tok::Ident(s) | Tok::Num(s) => format!("`{s}`"),
        Tok::Str(s) => format!("\"{s}\""),
        Tok::Punct(c) => format!("`{c}`"),
    }
}

fn parse_int(t: &str) -> Option<i64> {
    let (neg, body) = match t.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let v = if let Some(hex) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        i64::from_str_radix(hex, 16).ok()?
    } else {
        body.parse::<i64>().ok()?
    };
    Some(if neg { -v } else { v })
}

fn parse_float(t: &str) -> Option<f32> {
    let lower = t.to_ascii_lowercase();
    let body = lower
        .strip_suffix('f')
        .filter(|b| !b.ends_with("in"))
        .unwrap_or(&lower);
    match body {
        "inf" | "+inf" | "infinity" => Some(f32::INFINITY),
        "-inf" | "-infinity" => Some(f32::NEG_INFINITY),
        "nan" => Some(f32::NAN),
        _ => body.parse::<f32>().ok(),
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_key(out: &mut Vec<u8>, tag: u32, wire: u8) {
    put_varint(out, (u64::from(tag) << 3) | u64::from(wire));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::caffe_proto::*;

    /// Every field of the schema, each with its own value, must land in the prost field of
    /// the same name: the schema and the structs agree on the field numbers.
    #[test]
    fn every_schema_field_lands_in_its_prost_field() {
        let net = parse(
            r#"
            name: "n" input: "x" input_dim: 1 input_dim: -2 input_shape { dim: 3 }
            layer {
              name: "l" type: "T" bottom: "b" top: "t"
              include { phase: TEST } exclude { phase: TRAIN }
              blobs { num: 1 channels: 2 height: 3 width: 4 data: [0.5, -1e3] shape { dim: 7 } }
              concat_param { concat_dim: 2 axis: -1 }
              convolution_param { num_output: 1 bias_term: false pad: 2 kernel_size: 3 group: 4
                stride: 5 pad_h: 6 pad_w: 7 kernel_h: 8 kernel_w: 9 stride_h: 10 stride_w: 11
                axis: 12 dilation: 13 }
              dropout_param { dropout_ratio: 0.25 scale_train: false }
              eltwise_param { operation: MAX coeff: 2 }
              inner_product_param { num_output: 3 bias_term: false axis: 2 transpose: true }
              lrn_param { local_size: 7 alpha: 2 beta: 3 norm_region: WITHIN_CHANNEL k: 4 }
              pooling_param < pool: AVE kernel_size: 1 stride: 2 pad: 3 kernel_h: 4 kernel_w: 5
                stride_h: 6 stride_w: 7 pad_h: 8 pad_w: 9 global_pooling: true round_mode: FLOOR >
              relu_param { negative_slope: 0.5 }
              softmax_param { axis: 3 }
              prelu_param { channel_shared: true }
              reshape_param { shape { dim: 0 dim: -1 } axis: 1 num_axes: 2 }
              flatten_param { axis: 2 end_axis: 3 }
              batch_norm_param { use_global_stats: true eps: 0.5 }
              scale_param { axis: 2 num_axes: 3 bias_term: true }
              input_param { shape { dim: 9 } }
              permute_param { order: 0 order: 2 }
              prior_box_param { min_size: 1 max_size: 2 aspect_ratio: 3 flip: false clip: true
                variance: 4 img_size: 5 img_h: 6 img_w: 7 step: 8 step_h: 9 step_w: 10
                offset: 11 }
              detection_output_param { num_classes: 1 share_location: false
                background_label_id: 2 nms_param { nms_threshold: 3 top_k: 4 }
                code_type: CENTER_SIZE keep_top_k: 5 variance_encoded_in_target: true
                confidence_threshold: 6 }
              norm_param { across_spatial: false channel_shared: false eps: 2 }
            }
            layers { bottom: "b" top: "t" name: "v1" type: CONVOLUTION
              blobs { data: 1 } concat_param { axis: 1 } convolution_param { num_output: 2 }
              dropout_param { dropout_ratio: 0.1 } inner_product_param { num_output: 3 }
              lrn_param { local_size: 4 } pooling_param { pool: AVE } eltwise_param { coeff: 5 }
              relu_param { negative_slope: 6 } include { phase: TEST } exclude { phase: TRAIN }
              softmax_param { axis: 7 } }
            "#,
        )
        .unwrap();
        assert_eq!(net.name.as_deref(), Some("n"));
        assert_eq!(net.input, ["x"]);
        assert_eq!(net.input_dim, [1, -2]);
        assert_eq!(net.input_shape, [BlobShape { dim: vec![3] }]);
        let l = &net.layer[0];
        assert_eq!(
            (l.name.as_deref(), l.r#type.as_deref()),
            (Some("l"), Some("T"))
        );
        assert_eq!(
            (&l.bottom[..], &l.top[..]),
            (&["b".to_string()][..], &["t".to_string()][..])
        );
        assert_eq!(l.include, [NetStateRule { phase: Some(1) }]);
        assert_eq!(l.exclude, [NetStateRule { phase: Some(0) }]);
        let shape = |d: &[i64]| Some(BlobShape { dim: d.to_vec() });
        assert_eq!(
            l.blobs,
            [BlobProto {
                num: Some(1),
                channels: Some(2),
                height: Some(3),
                width: Some(4),
                data: vec![0.5, -1000.0],
                shape: shape(&[7]),
                double_data: vec![],
            }]
        );
        assert_eq!(
            l.concat_param,
            Some(ConcatParameter {
                concat_dim: Some(2),
                axis: Some(-1)
            })
        );
        assert_eq!(
            l.convolution_param,
            Some(ConvolutionParameter {
                num_output: Some(1),
                bias_term: Some(false),
                pad: vec![2],
                kernel_size: vec![3],
                group: Some(4),
                stride: vec![5],
                pad_h: Some(6),
                pad_w: Some(7),
                kernel_h: Some(8),
                kernel_w: Some(9),
                stride_h: Some(10),
                stride_w: Some(11),
                axis: Some(12),
                dilation: vec![13],
            })
        );
        assert_eq!(
            l.dropout_param,
            Some(DropoutParameter {
                dropout_ratio: Some(0.25),
                scale_train: Some(false)
            })
        );
        assert_eq!(
            l.eltwise_param,
            Some(EltwiseParameter {
                operation: Some(2),
                coeff: vec![2.0]
            })
        );
        assert_eq!(
            l.inner_product_param,
            Some(InnerProductParameter {
                num_output: Some(3),
                bias_term: Some(false),
                axis: Some(2),
                transpose: Some(true),
            })
        );
        assert_eq!(
            l.lrn_param,
            Some(LrnParameter {
                local_size: Some(7),
                alpha: Some(2.0),
                beta: Some(3.0),
                norm_region: Some(1),
                k: Some(4.0),
            })
        );
        assert_eq!(
            l.pooling_param,
            Some(PoolingParameter {
                pool: Some(1),
                kernel_size: vec![1],
                stride: vec![2],
                pad: vec![3],
                kernel_h: Some(4),
                kernel_w: Some(5),
                stride_h: Some(6),
                stride_w: Some(7),
                pad_h: Some(8),
                pad_w: Some(9),
                global_pooling: Some(true),
                round_mode: Some(1),
            })
        );
        assert_eq!(
            l.relu_param,
            Some(ReluParameter {
                negative_slope: Some(0.5)
            })
        );
        assert_eq!(l.softmax_param, Some(SoftmaxParameter { axis: Some(3) }));
        assert_eq!(
            l.prelu_param,
            Some(PReluParameter {
                channel_shared: Some(true)
            })
        );
        assert_eq!(
            l.reshape_param,
            Some(ReshapeParameter {
                shape: shape(&[0, -1]),
                axis: Some(1),
                num_axes: Some(2)
            })
        );
        assert_eq!(
            l.flatten_param,
            Some(FlattenParameter {
                axis: Some(2),
                end_axis: Some(3)
            })
        );
        assert_eq!(
            l.batch_norm_param,
            Some(BatchNormParameter {
                use_global_stats: Some(true),
                eps: Some(0.5)
            })
        );
        assert_eq!(
            l.scale_param,
            Some(ScaleParameter {
                axis: Some(2),
                num_axes: Some(3),
                bias_term: Some(true)
            })
        );
        assert_eq!(
            l.input_param,
            Some(InputParameter {
                shape: vec![BlobShape { dim: vec![9] }]
            })
        );
        assert_eq!(
            l.permute_param,
            Some(PermuteParameter { order: vec![0, 2] })
        );
        assert_eq!(
            l.prior_box_param,
            Some(PriorBoxParameter {
                min_size: vec![1.0],
                max_size: vec![2.0],
                aspect_ratio: vec![3.0],
                flip: Some(false),
                clip: Some(true),
                variance: vec![4.0],
                img_size: Some(5),
                img_h: Some(6),
                img_w: Some(7),
                step: Some(8.0),
                step_h: Some(9.0),
                step_w: Some(10.0),
                offset: Some(11.0),
            })
        );
        assert_eq!(
            l.detection_output_param,
            Some(DetectionOutputParameter {
                num_classes: Some(1),
                share_location: Some(false),
                background_label_id: Some(2),
                nms_param: Some(NonMaximumSuppressionParameter {
                    nms_threshold: Some(3.0),
                    top_k: Some(4),
                }),
                code_type: Some(2),
                keep_top_k: Some(5),
                variance_encoded_in_target: Some(true),
                confidence_threshold: Some(6.0),
            })
        );
        assert_eq!(
            l.norm_param,
            Some(NormalizeParameter {
                across_spatial: Some(false),
                channel_shared: Some(false),
                eps: Some(2.0),
            })
        );
        let v = &net.layers[0];
        assert_eq!((v.name.as_deref(), v.r#type), (Some("v1"), Some(4)));
        assert_eq!(
            (&v.bottom[..], &v.top[..]),
            (&["b".to_string()][..], &["t".to_string()][..])
        );
        assert_eq!(v.blobs[0].data, [1.0]);
        assert_eq!(v.concat_param.as_ref().unwrap().axis, Some(1));
        assert_eq!(v.convolution_param.as_ref().unwrap().num_output, Some(2));
        assert_eq!(v.dropout_param.as_ref().unwrap().dropout_ratio, Some(0.1));
        assert_eq!(v.inner_product_param.as_ref().unwrap().num_output, Some(3));
        assert_eq!(v.lrn_param.as_ref().unwrap().local_size, Some(4));
        assert_eq!(v.pooling_param.as_ref().unwrap().pool, Some(1));
        assert_eq!(v.eltwise_param.as_ref().unwrap().coeff, [5.0]);
        assert_eq!(v.relu_param.as_ref().unwrap().negative_slope, Some(6.0));
        assert_eq!(v.softmax_param.as_ref().unwrap().axis, Some(7));
        assert_eq!(v.include, [NetStateRule { phase: Some(1) }]);
        assert_eq!(v.exclude, [NetStateRule { phase: Some(0) }]);
    }

    #[test]
    fn text_format_details() {
        // Comments, `;` and `,` separators, single quotes, concatenated strings, unknown
        // fields and blocks (skipped), hex integers, a float with an `f` suffix.
        let net = parse(
            "# c\nname: 'a' \"b\" ; unknown_field: 3 unknown_block { x: 1 y { z: \"q\" } }\n\
             layer { name: \"l\", convolution_param { num_output: 0x10 } relu_param { negative_slope: 0.5f } }",
        )
        .unwrap();
        assert_eq!(net.name.as_deref(), Some("ab"));
        assert_eq!(
            net.layer[0].convolution_param.as_ref().unwrap().num_output,
            Some(16)
        );
        assert_eq!(
            net.layer[0].relu_param.as_ref().unwrap().negative_slope,
            Some(0.5)
        );
        for (text, want) in [
            (
                "name: \"a\"\nlayer {\n  top \"x\"\n}",
                "3:3: expected `:` or `{` after `top`",
            ),
            ("layer {\n name: \"a\"", "missing `}`"),
            (
                "layer { convolution_param { num_output: -1 } }",
                "1:41: `num_output` wants a non-negative integer",
            ),
            ("layer { name: 3 }", "1:15"),
            ("layer { name: \"a }", "1:15: unterminated string"),
            ("layer { include { phase: NEVER } }", "one of TRAIN, TEST"),
            ("name: \"a\" $", "1:11: unexpected character"),
            (
                "layer { convolution_param: 3 }",
                "1:28: `convolution_param` wants a `{ ... }` block",
            ),
        ] {
            let e = format!("{:#}", parse(text).unwrap_err());
            assert!(e.contains(want), "{text:?}: {e}");
        }
        // Deep nesting (in a skipped block too) is an error, not a stack overflow.
        let deep = format!("layer {{ {} }}", "x { ".repeat(100_000));
        let e = format!("{:#}", parse(&deep).unwrap_err());
        assert!(e.contains("nested more than 64 deep"), "{e}");
    }
}
