//! Layers and blobs as a validated graph: every blob has one producer and a unique name,
//! every input is produced, there is no cycle; layers are put in a runnable order. As in
//! ncnn, layer names may repeat (they only label errors) and the header's blob count is an
//! upper bound (ncnn sizes its blob table with it; fewer blobs are fine).

use crate::error::{Error, Result};
use crate::model::param::{LayerRecord, ParamFile};
use std::collections::HashMap;

#[derive(Clone, Debug)]
pub struct Blob {
    pub name: String,
    pub producer: usize,
    pub consumers: Vec<usize>,
}

#[derive(Clone, Debug)]
pub struct Graph {
    pub layers: Vec<LayerRecord>,
    pub blobs: Vec<Blob>,
    /// Blob ids read / written by each layer, in record order.
    pub inputs: Vec<Vec<usize>>,
    pub outputs: Vec<Vec<usize>>,
    /// Layer indices in execution order (file order where the file is already topological).
    pub order: Vec<usize>,
}

impl Graph {
    pub fn new(p: ParamFile, file: &str) -> Result<Graph> {
        let err = |line: usize, msg: String| Error::Param {
            file: file.to_string(),
            line,
            msg,
        };
        let mut by_name: HashMap<&str, usize> = HashMap::new();
        let mut blobs: Vec<Blob> = Vec::new();
        let mut outputs = Vec::with_capacity(p.layers.len());
        for (li, l) in p.layers.iter().enumerate() {
            let mut outs = Vec::with_capacity(l.tops.len());
            for t in &l.tops {
                if let Some(&b) = by_name.get(t.as_str()) {
                    let other = &p.layers[blobs[b].producer];
                    return Err(err(
                        l.line,
                        format!(
                            "layer `{}`: output blob `{t}` is already produced by layer `{}`",
                            l.name, other.name
                        ),
                    ));
                }
                by_name.insert(t, blobs.len());
                outs.push(blobs.len());
                blobs.push(Blob {
                    name: t.clone(),
                    producer: li,
                    consumers: Vec::new(),
                });
            }
            outputs.push(outs);
        }
        let mut inputs = Vec::with_capacity(p.layers.len());
        for (li, l) in p.layers.iter().enumerate() {
            let mut ins = Vec::with_capacity(l.bottoms.len());
            for b in &l.bottoms {
                let id = *by_name.get(b.as_str()).ok_or_else(|| {
                    err(
                        l.line,
                        format!(
                            "layer `{}`: input blob `{b}` is not produced by any layer",
                            l.name
                        ),
                    )
                })?;
                blobs[id].consumers.push(li);
                ins.push(id);
            }
            inputs.push(ins);
        }
        if blobs.len() > p.blob_count {
            return Err(err(
                2,
                format!(
                    "header declares {} blobs but the layers name {} distinct blobs",
                    p.blob_count,
                    blobs.len()
                ),
            ));
        }

        // Kahn's algorithm, always taking the earliest ready layer so file order is kept.
        let n = p.layers.len();
        let mut pending: Vec<usize> = inputs.iter().map(|i| i.len()).collect();
        let mut ready = std::collections::BTreeSet::new();
        for (li, &c) in pending.iter().enumerate() {
            if c == 0 {
                ready.insert(li);
            }
        }
        let mut order = Vec::with_capacity(n);
        while let Some(li) = ready.pop_first() {
            order.push(li);
            for &b in &outputs[li] {
                for &c in &blobs[b].consumers {
                    pending[c] -= 1;
                    if pending[c] == 0 {
                        ready.insert(c);
                    }
                }
            }
        }
        if order.len() != n {
            let stuck = (0..n)
                .find(|&i| pending[i] > 0)
                .expect("some layer is waiting");
            let l = &p.layers[stuck];
            return Err(err(
                l.line,
                format!("layer `{}` is part of a cycle", l.name),
            ));
        }
        Ok(Graph {
            layers: p.layers,
            blobs,
            inputs,
            outputs,
            order,
        })
    }

    pub fn blob_id(&self, name: &str) -> Option<usize> {
        self.blobs.iter().position(|b| b.name == name)
    }

    /// Each layer's step: its position in `order`.
    pub fn steps(&self) -> Vec<usize> {
        let mut s = vec![0; self.layers.len()];
        for (i, &li) in self.order.iter().enumerate() {
            s[li] = i;
        }
        s
    }

    /// Per blob: the last step that reads it, None for a blob no layer reads.
    pub fn last_reads(&self) -> Vec<Option<usize>> {
        let steps = self.steps();
        self.blobs
            .iter()
            .map(|b| b.consumers.iter().map(|&c| steps[c]).max())
            .collect()
    }
}
