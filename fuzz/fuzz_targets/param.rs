//! Arbitrary bytes as a `.param` or `.param.bin`: parsing may fail, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = eq_runtime::model::parse_param(data, "<fuzz>");
});
