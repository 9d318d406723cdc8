//! Stable-toolchain fuzzing of the model loaders (the cargo-fuzz targets in `fuzz/` need
//! nightly). Feeds random mutations of the malformed-model corpus and of a few valid seeds
//! (text and binary params, with and without weights) to `model::parse_param` and
//! `Net::from_memory`, runs every net that loads, and reports any panic.
//!
//! cargo run -p eq-runtime --example fuzz_parse --profile test -- [iterations] [seed] [dir...]
//! cargo run -p eq-runtime --example fuzz_parse -- --corpus OUT_DIR SEED_DIR...
//!
//! Extra directories add their `.param` / `.bin` files as seeds. Inputs that panic are saved
//! in `target/fuzz-crashes/`. The exit status is 1 when anything panicked.

use eq_runtime::model::param::ParamFile;
use eq_runtime::model::paramdict::Value;
use eq_runtime::model::{param_bin, parse_param};
use eq_runtime::rng::Rng;
use eq_runtime::{Net, Options, Shape};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A small model using every op this branch has, as text.
const SSD_TAIL: &str = "7767517\n9 10\n\
Input feat 0 1 feat 0=2 1=2 2=1\n\
Input image 0 1 image 0=8 1=8 2=1\n\
Input loc 0 1 loc 0=64\n\
Input conf 0 1 conf 0=48\n\
Split split 1 2 feat feat_a feat_b\n\
ReLU relu 1 1 feat_b feat_relu 0=0.1\n\
PriorBox pb 2 1 feat_a image pb -23300=1,4.0 -23301=1,6.0 -23302=1,2.0 8=1 9=-233 10=-233 13=0.5\n\
ReLU relu_conf 1 1 conf conf_relu\n\
DetectionOutput det 3 1 loc conf_relu pb out 0=3 1=0.45 2=10 3=5 4=0.25\n";

/// Tokens and words that parsers treat specially.
const TOKENS: &[&str] = &[
    "-233",
    "-23300=",
    "-23301=2,",
    "-23400=",
    "=",
    ",",
    "\"",
    "\n",
    " ",
    "0=",
    "1=",
    "11=",
    "30=",
    "31=",
    "-23330=4,2,",
    "2147483647",
    "-2147483648",
    "4294967296",
    "1e39",
    "0.5",
    "nan",
    "inf",
    " Split ",
    " ReLU ",
    " Input ",
    " PriorBox ",
    " DetectionOutput ",
    " 0 ",
    " 1 ",
    " 2 ",
    "7767517",
    "\u{00e9}",
    "\0",
];
const WORDS: &[i32] = &[
    0,
    1,
    2,
    -1,
    -233,
    -23300,
    -23301,
    -23400,
    -23330,
    i32::MIN,
    i32::MAX,
    1 << 20,
    16,
    26,
    33,
    48,
    49,
    7_767_517,
];

/// Encodes a parsed text param as `.param.bin` (blob names become their first-use numbers).
fn to_param_bin(p: &ParamFile) -> Vec<u8> {
    let mut out = Vec::new();
    let mut put = |v: i32| out.extend_from_slice(&v.to_le_bytes());
    let mut blobs: Vec<String> = Vec::new();
    let mut blob = |name: &str| match blobs.iter().position(|b| b == name) {
        Some(i) => i as i32,
        None => {
            blobs.push(name.to_string());
            blobs.len() as i32 - 1
        }
    };
    put(7_767_517);
    put(p.layers.len() as i32);
    put(p.blob_count as i32);
    for l in &p.layers {
        put(param_bin::type_index(&l.kind).map_or(999, |t| t as i32));
        put(l.bottoms.len() as i32);
        put(l.tops.len() as i32);
        for b in l.bottoms.iter().chain(&l.tops) {
            put(blob(b));
        }
        for k in l.params.keys() {
            let k = k as i32;
            let array = |put: &mut dyn FnMut(i32), words: Vec<i32>| {
                put(-23300 - k);
                put(words.len() as i32);
                words.into_iter().for_each(put);
            };
            match l.params.get(k as usize).expect("listed key") {
                Value::Int(v) => put_pair(&mut put, k, *v),
                Value::Raw(v) => put_pair(&mut put, k, *v as i32),
                Value::Float(f) => put_pair(&mut put, k, f.to_bits() as i32),
                Value::IntArray(a) => array(&mut put, a.clone()),
                Value::RawArray(a) => array(&mut put, a.iter().map(|&v| v as i32).collect()),
                Value::FloatArray(a) => {
                    array(&mut put, a.iter().map(|f| f.to_bits() as i32).collect())
                }
                Value::Str(s) => {
                    put(-23400 - k);
                    put(s.len() as i32);
                    let mut b = s.as_bytes().to_vec();
                    b.resize(s.len().div_ceil(4) * 4, 0);
                    b.chunks(4)
                        .for_each(|c| put(i32::from_le_bytes([c[0], c[1], c[2], c[3]])));
                }
            }
        }
        put(-233);
    }
    out
}

fn put_pair(put: &mut dyn FnMut(i32), key: i32, value: i32) {
    put(key);
    put(value);
}

fn pick<'a, T>(rng: &mut Rng, items: &'a [T]) -> &'a T {
    &items[rng.range(0, items.len() as i64 - 1) as usize]
}

/// Applies one random edit.
fn mutate(rng: &mut Rng, data: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    let len = data.len();
    let at = |rng: &mut Rng| rng.range(0, len as i64) as usize;
    match rng.range(0, 10) {
        // Replace one number in text with another: keeps the file well-formed more often.
        8 | 9 if len > 0 => {
            let i = at(rng).min(len - 1);
            let Some(start) = (i..len).find(|&j| data[j].is_ascii_digit()) else {
                return;
            };
            let end = (start..len)
                .find(|&j| !(data[j].is_ascii_digit() || data[j] == b'.'))
                .unwrap_or(len);
            let number = match rng.range(0, 2) {
                0 => pick(rng, WORDS).to_string(),
                1 => rng.range(0, 40).to_string(),
                _ => format!("{}", rng.uniform(-4.0, 4.0)),
            };
            data.splice(start..end, number.bytes());
        }
        0 if len > 0 => {
            let i = at(rng).min(len - 1);
            data[i] ^= 1 << rng.range(0, 7);
        }
        1 if len > 0 => {
            let i = at(rng).min(len - 1);
            data[i] = *pick(rng, b"0123456789=,-. \n\"e\xff\x00");
        }
        2 => {
            let (a, b) = (at(rng), at(rng));
            data.drain(a.min(b)..a.max(b).min(a.min(b) + 16));
        }
        3 => {
            let (a, b, c) = (at(rng), at(rng), at(rng));
            let chunk = data[a.min(b)..a.max(b).min(a.min(b) + 64)].to_vec();
            data.splice(c..c, chunk);
        }
        4 => {
            let i = at(rng);
            let t = pick(rng, TOKENS).as_bytes();
            data.splice(i..i, t.iter().copied());
        }
        5 if len >= 4 => {
            let i = (at(rng) / 4 * 4).min(len - 4);
            data[i..i + 4].copy_from_slice(&pick(rng, WORDS).to_le_bytes());
        }
        6 => data.truncate(at(rng)),
        7 => {
            let other = pick(rng, seeds);
            let (i, j) = (at(rng), rng.range(0, other.len() as i64) as usize);
            data.truncate(i);
            data.extend_from_slice(&other[j..]);
        }
        _ => {
            let i = at(rng);
            let n = rng.range(1, 8) as usize;
            data.splice(i..i, std::iter::repeat_n(b' ', n));
        }
    }
}

/// Input shapes for a parsed model: the declared ones when small, else random small ones.
fn small_input_shapes(rng: &mut Rng, p: &ParamFile) -> Vec<(String, Shape)> {
    let mut shapes = Vec::new();
    for l in p.layers.iter().filter(|l| l.kind == "Input") {
        let Some(top) = l.tops.first() else { continue };
        let dim = |k: usize| l.params.int(k, 0).unwrap_or(0).max(1) as u64;
        let declared = [1, 2, 11]
            .iter()
            .fold(dim(0), |n, &k| n.saturating_mul(dim(k)));
        if declared > 1 << 16 || rng.range(0, 3) == 0 {
            let s = Shape::d3(
                rng.range(1, 8) as usize,
                rng.range(1, 8) as usize,
                rng.range(1, 3) as usize,
            );
            shapes.push((top.clone(), s));
        }
    }
    shapes
}

/// How far inputs got: parsed, loaded as a net, ran without error.
#[derive(Default, Debug)]
pub struct Stats {
    pub parsed: u64,
    pub loaded: u64,
    pub ran: u64,
}

/// Loads (and, when it loads, runs) one model; panics propagate to the caller.
fn exercise(rng: &mut Rng, param: &[u8], bin: &[u8], stats: &mut Stats) {
    // Over 64 MiB of blob memory is a load error, before anything is allocated.
    let mut opts = Options {
        memory_limit: Some(64 << 20),
        ..Options::default()
    };
    if let Ok(p) = parse_param(param, "<fuzz>") {
        stats.parsed += 1;
        opts.input_shapes = small_input_shapes(rng, &p);
    }
    let Ok(mut net) = Net::from_memory(param, bin, &opts) else {
        return;
    };
    stats.loaded += 1;
    let inputs: Vec<(String, usize)> = net
        .inputs()
        .map(|(n, s)| (n.to_string(), s.len()))
        .collect();
    for (name, len) in inputs {
        let mut data = rng.vec(len, -2.0, 2.0);
        if rng.range(0, 9) == 0 {
            data[0] = f32::NAN;
        }
        net.set_input(&name, &data).expect("planned input");
    }
    if net.run().is_ok() {
        stats.ran += 1;
    }
}

fn load_seeds(dirs: &[PathBuf]) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut params = vec![SSD_TAIL.as_bytes().to_vec()];
    let ssd = parse_param(SSD_TAIL.as_bytes(), "ssd").expect("valid seed");
    params.push(to_param_bin(&ssd));
    let mut bins = vec![Vec::new(), vec![0; 8]];
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            eprintln!("skipping unreadable seed directory {}", dir.display());
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            match path.extension().and_then(|e| e.to_str()) {
                Some("param") => {
                    if let Ok(p) = parse_param(&bytes, "seed") {
                        params.push(to_param_bin(&p));
                    }
                    params.push(bytes);
                }
                Some("bin") if bytes.len() <= 1 << 16 => bins.push(bytes),
                _ => {}
            }
        }
    }
    (params, bins)
}

/// Runs `iterations` mutated inputs; returns the number that panicked.
pub fn fuzz(
    iterations: u64,
    seed: u64,
    dirs: &[PathBuf],
    crash_dir: Option<&Path>,
    stats: &mut Stats,
) -> usize {
    static LAST_PANIC: Mutex<String> = Mutex::new(String::new());
    let (params, bins) = load_seeds(dirs);
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| {
        *LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()) = info.to_string();
    }));
    let mut rng = Rng::new(seed);
    let mut crashes = 0;
    for i in 0..iterations {
        // Half the time start from a valid seed (the first two) so mutations get past the
        // header; few edits per input, since each tends to invalidate the file.
        let seed_pool = if rng.range(0, 1) == 0 {
            &params[..2]
        } else {
            &params[..]
        };
        let mut param = pick(&mut rng, seed_pool).clone();
        let mut bin = pick(&mut rng, &bins).clone();
        let edits = if rng.range(0, 3) == 0 { 8 } else { 2 };
        for _ in 0..rng.range(1, edits) {
            mutate(&mut rng, &mut param, &params);
        }
        if rng.range(0, 3) == 0 {
            mutate(&mut rng, &mut bin, &bins);
        }
        let mut run_rng = Rng::new(rng.next_u64());
        if catch_unwind(AssertUnwindSafe(|| {
            exercise(&mut run_rng, &param, &bin, stats)
        }))
        .is_err()
        {
            crashes += 1;
            let msg = LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()).clone();
            eprintln!("iteration {i}: panic: {msg}");
            if let Some(dir) = crash_dir {
                let _ = std::fs::create_dir_all(dir);
                let _ = std::fs::write(dir.join(format!("crash-{seed}-{i}.param")), &param);
                let _ = std::fs::write(dir.join(format!("crash-{seed}-{i}.bin")), &bin);
            }
        }
    }
    std::panic::set_hook(previous_hook);
    crashes
}

/// The largest input the libFuzzer campaign is seeded with (scripts/fuzz-campaign.sh passes
/// the same `-max_len`): long enough for a param and the first layers' weights.
const MAX_SEED_LEN: usize = 256 << 10;

/// Writes seed corpora for the cargo-fuzz targets: `out/param/` gets every `.param` found
/// (recursively) under `dirs` as text and as `.param.bin`; `out/model/` gets the model
/// target's layout, `[u16 param length][param][weights]`, with the weights of the `.bin`
/// files beside the param whose names start with its stem (cut to [`MAX_SEED_LEN`]).
/// Returns the number of files written.
fn write_corpus(out: &Path, dirs: &[PathBuf]) -> std::io::Result<usize> {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            eprintln!("skipping unreadable directory {}", dir.display());
            return;
        };
        for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
            if path.is_dir() {
                walk(&path, found);
            } else {
                found.push(path);
            }
        }
    }
    let mut files = Vec::new();
    for dir in dirs {
        walk(dir, &mut files);
    }
    files.sort();
    let (param_dir, model_dir) = (out.join("param"), out.join("model"));
    std::fs::create_dir_all(&param_dir)?;
    std::fs::create_dir_all(&model_dir)?;
    let mut written = 0;
    let mut n = 0;
    for path in files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "param"))
    {
        let text = std::fs::read(path)?;
        let mut forms = vec![text];
        if let Ok(p) = parse_param(&forms[0], "seed") {
            forms.push(to_param_bin(&p));
        }
        let stem = path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let bins: Vec<&PathBuf> = files
            .iter()
            .filter(|b| {
                b.parent() == path.parent()
                    && b.extension().is_some_and(|e| e == "bin")
                    && b.file_name().is_some_and(|f| {
                        f.to_string_lossy().strip_prefix(&stem).is_some_and(|rest| {
                            rest.starts_with('.') && !rest.starts_with(".param")
                        })
                    })
            })
            .collect();
        for (form, param) in forms.iter().enumerate() {
            n += 1;
            let ext = if form == 0 { "param" } else { "param.bin" };
            std::fs::write(param_dir.join(format!("{n:04}-{stem}.{ext}")), param)?;
            written += 1;
            let Ok(len) = u16::try_from(param.len()) else {
                continue;
            };
            let weights: Vec<Vec<u8>> = if bins.is_empty() {
                vec![Vec::new()]
            } else {
                bins.iter().map(std::fs::read).collect::<Result<_, _>>()?
            };
            for (k, w) in weights.iter().enumerate() {
                let mut seed = len.to_le_bytes().to_vec();
                seed.extend_from_slice(param);
                let room = MAX_SEED_LEN.saturating_sub(seed.len());
                seed.extend_from_slice(&w[..w.len().min(room)]);
                std::fs::write(model_dir.join(format!("{n:04}-{k}-{stem}")), seed)?;
                written += 1;
            }
        }
    }
    Ok(written)
}

#[allow(dead_code)]
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "--corpus") {
        let Some(out) = args.get(1) else {
            eprintln!("usage: fuzz_parse --corpus OUT_DIR SEED_DIR...");
            std::process::exit(2);
        };
        let dirs: Vec<PathBuf> = args[2..].iter().map(PathBuf::from).collect();
        match write_corpus(Path::new(out), &dirs) {
            Ok(n) => println!("{n} seed files in {out}"),
            Err(e) => {
                eprintln!("writing the corpus: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    let iterations = args.first().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let seed = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut dirs = vec![root.join("tests/malformed")];
    dirs.extend(args.iter().skip(2).map(PathBuf::from));
    let crash_dir = root.join("../target/fuzz-crashes");
    let start = std::time::Instant::now();
    let mut stats = Stats::default();
    let crashes = fuzz(iterations, seed, &dirs, Some(&crash_dir), &mut stats);
    println!(
        "{iterations} inputs in {:.1?}: {crashes} panicked; {stats:?}",
        start.elapsed()
    );
    std::process::exit(i32::from(crashes > 0));
}
