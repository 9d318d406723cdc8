//! ncnn's per-layer key=value parameters (keys 0..31).
//!
//! Text files tag each value int or float by its spelling; `.param.bin` files store untyped
//! 4-byte words that the reading layer reinterprets. Both are kept as written, and the getters
//! convert according to the type the layer asks for (lenient where ncnn would reinterpret
//! bits; see `docs` in ncnn-format.md §2.4).

use crate::error::{invalid, LayerResult};

/// Keys accepted by ncnn (`NCNN_MAX_PARAM_COUNT`).
pub const MAX_KEYS: usize = 32;
/// Key 30 carries output shape hints, key 31 the feature mask; both belong to the net.
pub const KEY_SHAPE_HINTS: usize = 30;
pub const KEY_FEATMASK: usize = 31;

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Int(i32),
    Float(f32),
    /// Untyped word from a `.param.bin`.
    Raw(u32),
    IntArray(Vec<i32>),
    FloatArray(Vec<f32>),
    RawArray(Vec<u32>),
    Str(String),
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParamDict {
    values: Vec<Option<Value>>,
}

impl ParamDict {
    pub fn new() -> ParamDict {
        ParamDict {
            values: vec![None; MAX_KEYS],
        }
    }

    pub fn set(&mut self, key: usize, v: Value) -> LayerResult<()> {
        if key >= MAX_KEYS {
            return Err(invalid(format!(
                "param key {key} out of range 0..{MAX_KEYS}"
            )));
        }
        if self.values.is_empty() {
            self.values = vec![None; MAX_KEYS];
        }
        self.values[key] = Some(v);
        Ok(())
    }

    pub fn get(&self, key: usize) -> Option<&Value> {
        self.values.get(key).and_then(|v| v.as_ref())
    }

    pub fn has(&self, key: usize) -> bool {
        self.get(key).is_some()
    }

    /// Keys set, in increasing order (used by writers and diagnostics).
    pub fn keys(&self) -> impl Iterator<Item = usize> + '_ {
        self.values
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_some())
            .map(|(k, _)| k)
    }

    pub fn int(&self, key: usize, default: i32) -> LayerResult<i32> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::Int(i)) => Ok(*i),
            Some(Value::Raw(r)) => Ok(*r as i32),
            Some(Value::Float(f)) if f.fract() == 0.0 && f.abs() < 2.0e9 => Ok(*f as i32),
            Some(v) => Err(invalid(format!(
                "param {key}: expected an integer, found {v:?}"
            ))),
        }
    }

    /// A non-negative integer parameter (sizes, counts).
    pub fn usize(&self, key: usize, default: usize) -> LayerResult<usize> {
        let v = self.int(key, default as i32)?;
        usize::try_from(v).map_err(|_| invalid(format!("param {key}: {v} must not be negative")))
    }

    pub fn float(&self, key: usize, default: f32) -> LayerResult<f32> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::Float(f)) => Ok(*f),
            Some(Value::Int(i)) => Ok(*i as f32),
            Some(Value::Raw(r)) => Ok(f32::from_bits(*r)),
            Some(v) => Err(invalid(format!(
                "param {key}: expected a number, found {v:?}"
            ))),
        }
    }

    pub fn int_array(&self, key: usize) -> LayerResult<Vec<i32>> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::IntArray(a)) => Ok(a.clone()),
            Some(Value::RawArray(a)) => Ok(a.iter().map(|&r| r as i32).collect()),
            Some(Value::FloatArray(a)) if a.iter().all(|f| f.fract() == 0.0) => {
                Ok(a.iter().map(|&f| f as i32).collect())
            }
            Some(Value::Int(i)) => Ok(vec![*i]),
            Some(v) => Err(invalid(format!(
                "param {key}: expected an int array, found {v:?}"
            ))),
        }
    }

    pub fn float_array(&self, key: usize) -> LayerResult<Vec<f32>> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::FloatArray(a)) => Ok(a.clone()),
            Some(Value::IntArray(a)) => Ok(a.iter().map(|&i| i as f32).collect()),
            Some(Value::RawArray(a)) => Ok(a.iter().map(|&r| f32::from_bits(r)).collect()),
            Some(Value::Float(f)) => Ok(vec![*f]),
            Some(Value::Int(i)) => Ok(vec![*i as f32]),
            Some(v) => Err(invalid(format!(
                "param {key}: expected a float array, found {v:?}"
            ))),
        }
    }

    pub fn string(&self, key: usize) -> LayerResult<Option<String>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s.clone())),
            Some(v) => Err(invalid(format!(
                "param {key}: expected a string, found {v:?}"
            ))),
        }
    }
}
