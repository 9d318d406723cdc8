//! Param and weight bytes together: loading (and running what loads) may fail, never panic.
//!
//! Input layout: a little-endian u16 `n`, then `n` param bytes (clamped to what is there),
//! then the weight bytes. Input layers declaring a large (or no) shape get a small one so a
//! giant input costs nothing; nets needing over 64 MiB of blob memory fail to load
//! (`Options::memory_limit`), before anything is allocated for them.
#![no_main]

use eq_runtime::model::parse_param;
use eq_runtime::{Net, Options, Shape};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let n = u16::from_le_bytes([data[0], data[1]]) as usize;
    let rest = &data[2..];
    let (param, bin) = rest.split_at(n.min(rest.len()));

    let mut opts = Options {
        memory_limit: Some(64 << 20),
        ..Options::default()
    };
    if let Ok(p) = parse_param(param, "<fuzz>") {
        // Keep small declared shapes (so shape-coupled layers can load); replace large or
        // missing ones by small shapes derived from the layer index.
        for (i, l) in p.layers.iter().filter(|l| l.kind == "Input").enumerate() {
            let Some(top) = l.tops.first() else { continue };
            let dim = |k: usize| l.params.int(k, 0).unwrap_or(0).max(1) as u64;
            let declared = [1, 2, 11]
                .iter()
                .fold(dim(0), |n, &k| n.saturating_mul(dim(k)));
            if declared > 1 << 16 || !l.params.has(0) {
                let s = Shape::d3(1 + i % 5, 1 + i % 3, 1 + i % 2);
                opts.input_shapes.push((top.clone(), s));
            }
        }
    }
    let Ok(mut net) = Net::from_memory(param, bin, &opts) else {
        return;
    };
    let inputs: Vec<(String, usize)> = net
        .inputs()
        .map(|(name, s)| (name.to_string(), s.len()))
        .collect();
    for (name, len) in inputs {
        let values: Vec<f32> = (0..len).map(|i| (i % 7) as f32 * 0.25 - 0.5).collect();
        net.set_input(&name, &values)
            .expect("input shape is the planned one");
    }
    let _ = net.run();
});
