//! One error type for loading and running models. Every message names the file, line,
//! layer or blob it is about, so a user can find the problem without a debugger.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Reading a file failed (open, mmap, read).
    Io { path: String, msg: String },
    /// The `.param` / `.param.bin` file is malformed.
    Param {
        file: String,
        line: usize,
        msg: String,
    },
    /// The `.bin` weight file is malformed or does not match the param file.
    Weights {
        file: String,
        layer: String,
        msg: String,
    },
    /// The graph is not runnable (missing blobs, cycles, unknown layers).
    Graph { msg: String },
    /// A layer's parameters or input shapes are invalid.
    Layer {
        layer: String,
        kind: String,
        msg: String,
    },
    /// A caller-supplied input or a blob lookup is wrong.
    Input { msg: String },
    /// A worker task panicked; the pool stays usable.
    Panic { msg: String },
}

pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { path, msg } => write!(f, "{path}: {msg}"),
            Error::Param { file, line, msg } if *line > 0 => write!(f, "{file}:{line}: {msg}"),
            Error::Param { file, msg, .. } => write!(f, "{file}: {msg}"),
            Error::Weights { file, layer, msg } => write!(f, "{file}: layer `{layer}`: {msg}"),
            Error::Graph { msg } => write!(f, "graph: {msg}"),
            Error::Layer { layer, kind, msg } => write!(f, "layer `{layer}` ({kind}): {msg}"),
            Error::Input { msg } => write!(f, "{msg}"),
            Error::Panic { msg } => write!(f, "worker panicked: {msg}"),
        }
    }
}

impl std::error::Error for Error {}

/// Shorthand used by ops while building: the net adds layer name and type.
pub fn invalid(msg: impl Into<String>) -> LayerError {
    LayerError(msg.into())
}

/// An error raised by an op before the net knows which layer it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerError(pub String);

impl fmt::Display for LayerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub type LayerResult<T> = std::result::Result<T, LayerError>;

impl From<LayerError> for Error {
    /// The net fills in the layer's name and type.
    fn from(e: LayerError) -> Error {
        Error::Layer {
            layer: String::new(),
            kind: String::new(),
            msg: e.0,
        }
    }
}
