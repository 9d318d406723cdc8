//! Custom layers: layer types the application registers before loading a model, for models
//! with private layers (a YoloV5 "Focus", a vendor's post-processing...).
//!
//! A custom layer is an [`Op`] like the built-in ones: `output_shapes` is its shape inference
//! (called at load, its errors become load errors naming the layer), `forward` computes the
//! outputs into memory the net planned (it must not allocate if the net's zero-allocation
//! guarantee is to hold), and `storage` / `scratch_len` may be overridden as for any op.
//! The layer is created from its [`ParamDict`] (every key of its param line, strings
//! included) and a [`WeightReader`] positioned at its weights in the `.bin` (read them in the
//! order the model's writer stored them; the net checks at the end that the file was
//! consumed exactly).
//!
//! ```ignore
//! let mut opts = Options::default();
//! opts.custom_layers.register("Focus", |_pd, _w| Ok(Box::new(Focus)));
//! let net = Net::load("yolov5.param", "yolov5.bin", &opts)?;
//! ```
//!
//! A registered type takes precedence over a built-in of the same name. The C ABI
//! (`eq_options_register_layer`, include/eqrt.h) registers a struct of C callbacks through
//! the same registry.

use super::Op;
use crate::error::Result;
use crate::model::paramdict::ParamDict;
use crate::model::weights::WeightReader;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Creates one layer of a custom type from its params and weights.
pub type Creator = dyn Fn(&ParamDict, &mut WeightReader) -> Result<Box<dyn Op>> + Send + Sync;

/// Layer types registered by the application (`Options::custom_layers`), by type name.
#[derive(Clone, Default)]
pub struct Registry {
    creators: BTreeMap<String, Arc<Creator>>,
}

impl Registry {
    /// Registers (or replaces) the creator of layer type `kind`.
    pub fn register<F>(&mut self, kind: impl Into<String>, create: F)
    where
        F: Fn(&ParamDict, &mut WeightReader) -> Result<Box<dyn Op>> + Send + Sync + 'static,
    {
        self.creators.insert(kind.into(), Arc::new(create));
    }

    /// The creator of `kind`, if registered.
    pub fn get(&self, kind: &str) -> Option<&Creator> {
        self.creators.get(kind).map(|c| &**c)
    }

    /// Registered type names, sorted.
    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.creators.keys().map(|k| k.as_str())
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.kinds()).finish()
    }
}
