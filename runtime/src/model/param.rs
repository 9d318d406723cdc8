//! The text `.param` format: whitespace tokens, `key=value` parameters (ncnn-format.md §2).

use super::paramdict::{ParamDict, Value};
use crate::error::{Error, Result};

/// `.param` magic number.
pub const MAGIC: i32 = 7_767_517;
/// Upper bound on layer and blob counts: far above any real network, low enough that a
/// corrupt header cannot make the loader reserve gigabytes.
pub const MAX_COUNT: usize = 1 << 20;
/// ncnn reads names and types with `%255s`.
pub const MAX_NAME: usize = 255;

/// One layer as written in the param file, before any interpretation.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerRecord {
    pub kind: String,
    pub name: String,
    pub bottoms: Vec<String>,
    pub tops: Vec<String>,
    pub params: ParamDict,
    /// Line of the record in a text file (1-based), or the layer index + 1 in a binary file.
    pub line: usize,
}

/// A parsed param file: the layers in file order and the declared blob count.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamFile {
    pub layers: Vec<LayerRecord>,
    pub blob_count: usize,
}

struct Tokens<'a> {
    text: &'a str,
    pos: usize,
    line: usize,
}

impl<'a> Tokens<'a> {
    /// Next whitespace-separated token with its line; a `"` after `=` starts a quoted value
    /// that may contain spaces.
    fn next(&mut self) -> Option<(&'a str, usize)> {
        let bytes = self.text.as_bytes();
        while self.pos < bytes.len() && bytes[self.pos].is_ascii_whitespace() {
            if bytes[self.pos] == b'\n' {
                self.line += 1;
            }
            self.pos += 1;
        }
        if self.pos >= bytes.len() {
            return None;
        }
        let start = self.pos;
        let line = self.line;
        let mut quoted = false;
        while self.pos < bytes.len() {
            let b = bytes[self.pos];
            if b == b'"' && self.pos > start && bytes[self.pos - 1] == b'=' {
                quoted = true;
            } else if b == b'"' && quoted {
                quoted = false;
            } else if b.is_ascii_whitespace() && !quoted {
                break;
            }
            if b == b'\n' {
                self.line += 1;
            }
            self.pos += 1;
        }
        Some((&self.text[start..self.pos], line))
    }

    /// Whether another token follows on the current line (ncnn reads a layer's parameters
    /// from the rest of its line only).
    fn more_on_line(&self) -> bool {
        self.text.as_bytes()[self.pos..]
            .iter()
            .find(|b| !b.is_ascii_whitespace() || **b == b'\n')
            .is_some_and(|&b| b != b'\n')
    }
}

/// Whether `tok` has the form `<int>=...`.
fn is_param(tok: &str) -> bool {
    match tok.find('=') {
        Some(i) => {
            let k = &tok[..i];
            let k = k.strip_prefix(['-', '+']).unwrap_or(k);
            !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

/// Parses text param contents. `file` names the source in error messages.
pub fn parse_text(text: &str, file: &str) -> Result<ParamFile> {
    let err = |line: usize, msg: String| Error::Param {
        file: file.to_string(),
        line,
        msg,
    };
    let mut t = Tokens {
        text,
        pos: 0,
        line: 1,
    };

    let mut header = |what: &str| -> Result<(i64, usize)> {
        let (tok, line) = t
            .next()
            .ok_or_else(|| err(0, format!("truncated header: missing {what}")))?;
        let v = tok
            .parse::<i64>()
            .map_err(|_| err(line, format!("{what}: expected an integer, found `{tok}`")))?;
        Ok((v, line))
    };
    let (magic, line) = header("magic")?;
    if magic != MAGIC as i64 {
        return Err(err(
            line,
            format!(
                "wrong magic {magic} (expected {MAGIC}); not an ncnn param file or a too old one"
            ),
        ));
    }
    let (layer_count, line) = header("layer count")?;
    let (blob_count, _) = header("blob count")?;
    for (v, what) in [(layer_count, "layer count"), (blob_count, "blob count")] {
        if v <= 0 || v as usize > MAX_COUNT {
            return Err(err(
                line,
                format!("{what} {v} out of range 1..={MAX_COUNT}"),
            ));
        }
    }

    // Capacity from the text, not the header, so a lying header cannot reserve memory.
    let mut layers = Vec::with_capacity((layer_count as usize).min(text.len() / 8));
    for i in 0..layer_count as usize {
        let (kind, line) = t.next().ok_or_else(|| {
            err(
                t.line,
                format!("truncated: expected {layer_count} layers, found {i}"),
            )
        })?;
        let mut field = |what: &str| -> Result<&str> {
            t.next().map(|(s, _)| s).ok_or_else(|| {
                err(
                    line,
                    format!("layer `{kind}`: truncated record, missing {what}"),
                )
            })
        };
        let name = field("name")?.to_string();
        let counts = [field("input count")?, field("output count")?];
        let mut n = [0usize; 2];
        for (k, c) in counts.iter().enumerate() {
            n[k] = c
                .parse::<usize>()
                .ok()
                .filter(|&v| v <= 4096)
                .ok_or_else(|| err(line, format!("layer `{name}`: bad blob count `{c}`")))?;
        }
        check_name(kind, "type").map_err(|m| err(line, m))?;
        check_name(&name, "layer name").map_err(|m| err(line, m))?;
        let mut blobs = Vec::with_capacity(n[0] + n[1]);
        for j in 0..n[0] + n[1] {
            let what = if j < n[0] {
                "input blob"
            } else {
                "output blob"
            };
            let (b, bline) = t
                .next()
                .ok_or_else(|| err(line, format!("layer `{name}`: truncated, missing {what}")))?;
            check_name(b, what).map_err(|m| err(bline, format!("layer `{name}`: {m}")))?;
            if b.contains('=') {
                return Err(err(
                    bline,
                    format!("layer `{name}`: expected {what} name, found parameter `{b}`"),
                ));
            }
            blobs.push(b.to_string());
        }
        let tops = blobs.split_off(n[0]);
        let mut params = ParamDict::new();
        while t.more_on_line() {
            let (tok, pline) = t.next().expect("peeked");
            if !is_param(tok) {
                return Err(err(
                    pline,
                    format!("layer `{name}`: expected a key=value parameter, found `{tok}`"),
                ));
            }
            parse_param(tok, &mut params)
                .map_err(|m| err(pline, format!("layer `{name}`: {m}")))?;
        }
        layers.push(LayerRecord {
            kind: kind.to_string(),
            name,
            bottoms: blobs,
            tops,
            params,
            line,
        });
    }
    // Like ncnn, whatever follows the declared layers is not read.
    Ok(ParamFile {
        layers,
        blob_count: blob_count as usize,
    })
}

fn check_name(s: &str, what: &str) -> std::result::Result<(), String> {
    if s.len() > MAX_NAME {
        Err(format!("{what} longer than {MAX_NAME} characters"))
    } else {
        Ok(())
    }
}

/// Parses one `key=value` token into `params`.
fn parse_param(tok: &str, params: &mut ParamDict) -> std::result::Result<(), String> {
    let (k, v) = tok
        .split_once('=')
        .ok_or_else(|| format!("bad parameter `{tok}`"))?;
    // i32 as in ncnn; kept in i64 so the array-key arithmetic below cannot overflow.
    let key = k
        .parse::<i32>()
        .map(i64::from)
        .map_err(|_| format!("bad parameter key in `{tok}`"))?;
    if v.is_empty() {
        return Err(format!("parameter `{tok}` has no value"));
    }
    let (key, value) = if key <= -23300 {
        // Old-style array: key -23300-k, value "N,v1,...,vN"; tagged by its last element.
        let key = -23300 - key;
        let mut items = v.split(',');
        let n: usize = items
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("array `{tok}`: bad element count"))?;
        let items: Vec<&str> = items.collect();
        if items.len() != n {
            return Err(format!(
                "array `{tok}`: declares {n} elements, has {}",
                items.len()
            ));
        }
        let is_float = items.last().is_some_and(|s| is_float_text(s));
        (key, parse_array(&items, is_float, tok)?)
    } else if v.starts_with(|c: char| c.is_ascii_alphabetic() || c == '"') {
        let s = v.trim_matches('"');
        if s.len() > MAX_NAME {
            return Err(format!(
                "string parameter longer than {MAX_NAME} characters"
            ));
        }
        (key, Value::Str(s.to_string()))
    } else if v.contains(',') {
        // A trailing comma is ncnn's spelling of a one-element array (`5=1,`).
        let items: Vec<&str> = v.strip_suffix(',').unwrap_or(v).split(',').collect();
        let is_float = is_float_text(items[0]);
        (key, parse_array(&items, is_float, tok)?)
    } else if is_float_text(v) {
        (
            key,
            Value::Float(parse_float(v).ok_or_else(|| format!("bad float in `{tok}`"))?),
        )
    } else {
        (
            key,
            Value::Int(v.parse().map_err(|_| format!("bad integer in `{tok}`"))?),
        )
    };
    if !(0..32).contains(&key) {
        return Err(format!("parameter key {key} out of range 0..32 in `{tok}`"));
    }
    params.set(key as usize, value).map_err(|e| e.0)
}

fn is_float_text(s: &str) -> bool {
    s.contains(['.', 'e', 'E'])
}

/// Parses as double then narrows, as ncnn's own routine does.
fn parse_float(s: &str) -> Option<f32> {
    s.parse::<f64>().ok().map(|d| d as f32)
}

fn parse_array(items: &[&str], is_float: bool, tok: &str) -> std::result::Result<Value, String> {
    if is_float {
        let v: Option<Vec<f32>> = items.iter().map(|s| parse_float(s)).collect();
        v.map(Value::FloatArray)
            .ok_or_else(|| format!("bad float array `{tok}`"))
    } else {
        let v: std::result::Result<Vec<i32>, _> = items.iter().map(|s| s.parse::<i32>()).collect();
        v.map(Value::IntArray)
            .map_err(|_| format!("bad int array `{tok}`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_array_syntaxes_and_types() {
        let text = "7767517\n2 2\nInput in 0 1 data 0=4 1=4 2=3\n\
                    Convolution c 1 1 data out 0=2 1=3 2=1.0 -23310=2,0.0,6.0 -23330=4,3,2,2,2 5=7,8 6=\"a b\"\n";
        let p = parse_text(text, "t.param").unwrap();
        assert_eq!(p.layers.len(), 2);
        let c = &p.layers[1];
        assert_eq!(c.line, 4);
        assert_eq!(c.params.get(2), Some(&Value::Float(1.0)));
        assert_eq!(c.params.get(10), Some(&Value::FloatArray(vec![0.0, 6.0])));
        assert_eq!(c.params.get(30), Some(&Value::IntArray(vec![3, 2, 2, 2])));
        assert_eq!(c.params.get(5), Some(&Value::IntArray(vec![7, 8])));
        assert_eq!(c.params.get(6), Some(&Value::Str("a b".into())));
    }

    #[test]
    fn errors_name_the_line() {
        let text = "7767517\n1 1\nInput in 0 1 data 0=1x\n";
        let e = parse_text(text, "t.param").unwrap_err().to_string();
        assert!(e.starts_with("t.param:3:"), "{e}");
        let e = parse_text("7767516\n1 1\n", "t.param")
            .unwrap_err()
            .to_string();
        assert!(e.contains("wrong magic"), "{e}");
        let e = parse_text("7767517\n2 1\nInput in 0 1 data\n", "t.param")
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected 2 layers"), "{e}");
        let e = parse_text("7767517\n1 1\nInput in 0 1 data 40=1\n", "t.param")
            .unwrap_err()
            .to_string();
        assert!(e.contains("out of range"), "{e}");
    }

    #[test]
    fn accepts_what_ncnn_accepts() {
        // CRLF, tabs, blank lines, params only on the layer's line, one-element arrays with
        // a trailing comma, empty old-style arrays, `+` signs, `.5` / `1.` floats, strings
        // (quoted with spaces), repeated keys (the last wins), no final newline, and
        // anything after the declared layers ignored.
        let text = "7767517\r\n\r\n3 9\r\nInput\tin 0 1 data\r\n\
                    ReLU  r   1 1 data a\t0=.5 \r\n\
                    Clip r 1 1 a b 0=-1. 1=+2 5=1, -23306=0 0=-2. 7=abc 8=\"x y\"\r\n\
                    Garbage after the declared layers\n0=1";
        let p = parse_text(text, "t.param").unwrap();
        assert_eq!(p.layers.len(), 3);
        assert_eq!(p.blob_count, 9);
        assert_eq!(p.layers[1].params.get(0), Some(&Value::Float(0.5)));
        let c = &p.layers[2].params;
        assert_eq!(c.get(0), Some(&Value::Float(-2.0)));
        assert_eq!(c.get(1), Some(&Value::Int(2)));
        assert_eq!(c.get(5), Some(&Value::IntArray(vec![1])));
        assert_eq!(c.get(6), Some(&Value::IntArray(vec![])));
        assert_eq!(c.get(7), Some(&Value::Str("abc".into())));
        assert_eq!(c.get(8), Some(&Value::Str("x y".into())));
        // A parameter on the next line is not the layer's (ncnn reads it as the next
        // record, here past the declared layers).
        let p = parse_text(
            "7767517\n2 2\nInput in 0 1 data\nReLU r 1 1 data out\n0=0.5\n",
            "t",
        )
        .unwrap();
        assert!(!p.layers[1].params.has(0));
        // A token that is not key=value on the layer's line is an error, as in ncnn.
        let e = parse_text(
            "7767517\n2 2\nInput in 0 1 data\nReLU r 1 1 data out xyz\n",
            "t",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "t:4: layer `r`: expected a key=value parameter, found `xyz`"
        );
    }
}
