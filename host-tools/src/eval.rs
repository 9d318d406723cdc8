//! `eq eval` (top-1 / top-5 on labelled images) and `eq eval-lfw` (face verification on
//! LFW-style pairs), plus the scoring helpers the golden tests share.

use crate::dataset::Preprocess;
use crate::runner::{map_images, NetSpec, RunOptions};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Index of the largest value (the first one on ties).
pub fn argmax(x: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best
}

/// Whether `label` is among the `k` largest values (ties broken towards lower indices).
pub fn in_top_k(x: &[f32], label: usize, k: usize) -> bool {
    let Some(&v) = x.get(label) else { return false };
    let above = x
        .iter()
        .enumerate()
        .filter(|&(i, &o)| o > v || (o == v && i < label))
        .count();
    above < k
}

pub fn l2_normalized(x: &[f32]) -> Vec<f32> {
    let n = x.iter().map(|v| v * v).sum::<f32>().sqrt();
    x.iter().map(|v| v / n.max(1e-12)).collect()
}

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `<file> <class>` lines (blank lines and `#` comments skipped).
pub fn parse_labels(text: &str) -> Result<Vec<(String, usize)>> {
    text.lines()
        .enumerate()
        .map(|(n, l)| (n, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .map(|(n, l)| {
            let bad = || {
                format!(
                    "labels line {}: expected `<file> <class>`, got `{l}`",
                    n + 1
                )
            };
            let (file, class) = l.rsplit_once(char::is_whitespace).with_context(bad)?;
            let class = class.parse().ok().with_context(bad)?;
            Ok((file.trim().to_string(), class))
        })
        .collect()
}

/// The label of each image: the label entry whose path is a suffix of the image path (the
/// longest one if several match). An image without a label is an error.
pub fn match_labels(images: &[PathBuf], labels: &[(String, usize)]) -> Result<Vec<usize>> {
    let mut by_name: BTreeMap<&str, Vec<(&str, usize)>> = BTreeMap::new();
    for (file, class) in labels {
        let name = Path::new(file)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(file);
        by_name.entry(name).or_default().push((file, *class));
    }
    images
        .iter()
        .map(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let found = by_name
                .get(name)
                .into_iter()
                .flatten()
                .filter(|(f, _)| p.ends_with(f))
                .max_by_key(|(f, _)| f.len());
            match found {
                Some((_, c)) => Ok(*c),
                None => bail!("no label for image {} in the labels file", p.display()),
            }
        })
        .collect()
}

/// Picks the blob to score: `--output`, or the model's only output.
pub fn output_blob(spec: &NetSpec, requested: Option<&str>) -> Result<String> {
    if let Some(o) = requested {
        return Ok(o.to_string());
    }
    let pf = eq_runtime::model::read_param(&spec.param)?;
    let g = eq_runtime::graph::Graph::new(pf, &spec.param.display().to_string())?;
    let outs: Vec<&str> = g
        .blobs
        .iter()
        .filter(|b| b.consumers.is_empty())
        .map(|b| b.name.as_str())
        .collect();
    match outs[..] {
        [one] => Ok(one.to_string()),
        _ => bail!(
            "the model has several outputs ({}); choose one with --output",
            outs.join(", ")
        ),
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClassResult {
    pub top1: f64,
    pub top5: f64,
    pub n: usize,
    pub skipped: usize,
    /// Per image in list order: `1` top-1 correct, `0` wrong, `-` skipped (for paired
    /// comparisons of two models on the same images).
    pub top1_per_image: String,
}

impl ClassResult {
    /// The `--json` file: every field and the precision the model ran in.
    pub fn to_json(&self, precision: &str) -> String {
        with_precision(self, precision)
    }
}

/// `result` as pretty JSON with a `precision` field added.
fn with_precision(result: &impl Serialize, precision: &str) -> String {
    #[derive(Serialize)]
    struct Report<'a, T> {
        #[serde(flatten)]
        result: &'a T,
        precision: &'a str,
    }
    let report = Report { result, precision };
    // Serialising plain numbers and strings cannot fail.
    serde_json::to_string_pretty(&report).expect("result serialises") + "\n"
}

/// Top-1 / top-5 accuracy of `spec` over labelled images.
pub fn classify(
    spec: &NetSpec,
    prep: &Preprocess,
    images: &[PathBuf],
    labels: &[usize],
    output: Option<&str>,
    run: &RunOptions,
) -> Result<ClassResult> {
    let out = output_blob(spec, output)?;
    let mut spec = spec.clone();
    spec.keep_all_blobs |= output.is_some();
    let spec = &spec;
    let scored = map_images(spec, prep, images, run, &|net| {
        let x = net.blob(&out)?.data;
        Ok((argmax(x), x.to_vec()))
    })?;
    let (mut n, mut top1, mut top5) = (0usize, 0usize, 0usize);
    let mut per_image = String::with_capacity(images.len());
    for (r, &label) in scored.iter().zip(labels) {
        let Some((best, x)) = r else {
            per_image.push('-');
            continue;
        };
        if label >= x.len() {
            bail!(
                "label {label} is outside the model's {} classes (blob `{out}`)",
                x.len()
            );
        }
        n += 1;
        top1 += (*best == label) as usize;
        top5 += in_top_k(x, label, 5) as usize;
        per_image.push(if *best == label { '1' } else { '0' });
    }
    Ok(ClassResult {
        top1: top1 as f64 / n as f64,
        top5: top5 as f64 / n as f64,
        n,
        skipped: images.len() - n,
        top1_per_image: per_image,
    })
}

/// `pairs.txt`: `img1,img2,label` per line, label 1 (same person) or -1.
pub fn parse_pairs(text: &str) -> Result<Vec<(String, String, bool)>> {
    text.lines()
        .enumerate()
        .map(|(n, l)| (n, l.trim()))
        .filter(|(_, l)| !l.is_empty())
        .map(|(n, l)| {
            let f: Vec<&str> = l.split(',').map(str::trim).collect();
            match f[..] {
                [a, b, "1"] => Ok((a.to_string(), b.to_string(), true)),
                [a, b, "-1"] => Ok((a.to_string(), b.to_string(), false)),
                _ => bail!(
                    "pairs line {}: expected `img1,img2,label` with label 1 or -1, got `{l}`",
                    n + 1
                ),
            }
        })
        .collect()
}

/// Best accuracy of one threshold rule "same person iff score > t" over scored pairs, and
/// that threshold (the highest score predicted "different").
pub fn best_threshold_accuracy(scored: &[(f32, bool)]) -> (f64, f32) {
    let mut v = scored.to_vec();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Threshold below every score: everything is called "same".
    let mut correct = v.iter().filter(|p| p.1).count() as i64;
    let (mut best, mut best_t) = (correct, f32::NEG_INFINITY);
    let mut i = 0;
    while i < v.len() {
        // Move the threshold past all pairs with this score at once.
        let score = v[i].0;
        while i < v.len() && v[i].0 == score {
            correct += if v[i].1 { -1 } else { 1 };
            i += 1;
        }
        if correct > best {
            (best, best_t) = (correct, score);
        }
    }
    (best as f64 / v.len().max(1) as f64, best_t)
}

/// Accuracy of "same iff score > t".
pub fn accuracy_at(scored: &[(f32, bool)], t: f32) -> f64 {
    let ok = scored.iter().filter(|(s, same)| (*s > t) == *same).count();
    ok as f64 / scored.len().max(1) as f64
}

/// LFW's 10-fold protocol: the pairs are cut into 10 consecutive folds; each fold is scored
/// with the best threshold of the other nine (placed midway to the next higher score).
/// Returns the mean and standard deviation of the fold accuracies.
pub fn ten_fold_accuracy(scored: &[(f32, bool)]) -> (f64, f64) {
    const FOLDS: usize = 10;
    let n = scored.len();
    let mut accs = Vec::with_capacity(FOLDS);
    for k in 0..FOLDS {
        let (lo, hi) = (k * n / FOLDS, (k + 1) * n / FOLDS);
        if lo == hi {
            continue;
        }
        let train: Vec<(f32, bool)> = scored[..lo].iter().chain(&scored[hi..]).copied().collect();
        let (_, t) = best_threshold_accuracy(&train);
        let next = train
            .iter()
            .map(|p| p.0)
            .filter(|&s| s > t)
            .fold(f32::INFINITY, f32::min);
        let t = if t.is_finite() && next.is_finite() {
            t + (next - t) / 2.0
        } else {
            t
        };
        accs.push(accuracy_at(&scored[lo..hi], t));
    }
    let mean = accs.iter().sum::<f64>() / accs.len().max(1) as f64;
    let var = accs.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / accs.len().max(1) as f64;
    (mean, var.sqrt())
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LfwResult {
    /// 10-fold cross-validated accuracy.
    pub accuracy: f64,
    pub accuracy_std: f64,
    /// Accuracy of the single best threshold over all pairs, and that threshold.
    pub best_threshold_accuracy: f64,
    pub threshold: f32,
    pub pairs: usize,
}

impl LfwResult {
    /// The `--json` file; a threshold that is not finite (no pairs) is written as null.
    pub fn to_json(&self, precision: &str) -> String {
        with_precision(self, precision)
    }
}

/// Scores every pair by the cosine of the two L2-normalised embeddings.
pub fn lfw(
    spec: &NetSpec,
    prep: &Preprocess,
    pairs: &[(String, String, bool)],
    root: &Path,
    output: Option<&str>,
    run: &RunOptions,
) -> Result<LfwResult> {
    let out = output_blob(spec, output)?;
    let mut spec = spec.clone();
    spec.keep_all_blobs |= output.is_some();
    let spec = &spec;
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    let mut names = Vec::new();
    for (a, b, _) in pairs {
        for name in [a.as_str(), b.as_str()] {
            index.entry(name).or_insert_with(|| {
                names.push(name);
                names.len() - 1
            });
        }
    }
    let images: Vec<PathBuf> = names.iter().map(|n| root.join(n)).collect();
    let mut run = run.clone();
    run.strict = true; // a missing face would silently change the pair set
    let emb = map_images(spec, prep, &images, &run, &|net| {
        Ok(l2_normalized(net.blob(&out)?.data))
    })?;
    let scored: Vec<(f32, bool)> = pairs
        .iter()
        .map(|(a, b, same)| {
            let e = |n: &str| emb[index[n]].as_deref().unwrap_or(&[]);
            (dot(e(a), e(b)), *same)
        })
        .collect();
    let (accuracy, accuracy_std) = ten_fold_accuracy(&scored);
    let (best, threshold) = best_threshold_accuracy(&scored);
    Ok(LfwResult {
        accuracy,
        accuracy_std,
        best_threshold_accuracy: best,
        threshold,
        pairs: pairs.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k() {
        let x = [0.1, 0.7, 0.7, 0.2, 0.05, 0.3];
        assert_eq!(argmax(&x), 1);
        assert!(in_top_k(&x, 1, 1));
        assert!(!in_top_k(&x, 2, 1), "ties go to the lower index");
        assert!(in_top_k(&x, 2, 2));
        assert!(in_top_k(&x, 0, 5));
        assert!(!in_top_k(&x, 4, 5));
        assert!(!in_top_k(&x, 9, 5));
    }

    #[test]
    fn labels_and_matching() {
        let l = parse_labels("a.JPEG 3\n\n# x\nsub/b.png 7\nc.jpg 1\n").unwrap();
        assert_eq!(l[1], ("sub/b.png".to_string(), 7));
        let imgs = [
            PathBuf::from("/d/images/a.JPEG"),
            PathBuf::from("/d/sub/b.png"),
        ];
        assert_eq!(match_labels(&imgs, &l).unwrap(), [3, 7]);
        let e = match_labels(&[PathBuf::from("/d/other/b.png")], &l).unwrap_err();
        assert!(e.to_string().contains("no label"), "{e}");
        assert!(parse_labels("a.JPEG x\n").is_err());
        assert!(parse_labels("a.JPEG\n").is_err());
    }

    #[test]
    fn pairs_and_thresholds() {
        let p = parse_pairs("A/a_1.jpg,B/b_1.jpg,-1\nA/a_1.jpg,A/a_2.jpg,1\n\n").unwrap();
        assert_eq!(p[0], ("A/a_1.jpg".into(), "B/b_1.jpg".into(), false));
        assert!(p[1].2);
        assert!(parse_pairs("a,b,0").is_err());
        assert!(parse_pairs("a,b").is_err());

        let s = [(0.1, false), (0.9, true), (0.2, false), (0.6, true)];
        assert_eq!(best_threshold_accuracy(&s), (1.0, 0.2));
        let s = [(0.1, false), (0.5, true), (0.7, false), (0.9, true)];
        assert_eq!(best_threshold_accuracy(&s).0, 0.75);
        let s = [(0.5, true), (0.5, false)];
        assert_eq!(best_threshold_accuracy(&s).0, 0.5);
        assert_eq!(
            best_threshold_accuracy(&[(0.3, true)]),
            (1.0, f32::NEG_INFINITY)
        );
        assert_eq!(accuracy_at(&[(0.3, true), (0.1, false)], 0.2), 1.0);
    }

    #[test]
    fn ten_fold() {
        // Separable scores: every fold is perfect.
        let scored: Vec<(f32, bool)> = (0..40)
            .map(|i| {
                let same = i % 2 == 0;
                (if same { 0.6 + i as f32 * 0.001 } else { 0.1 }, same)
            })
            .collect();
        assert_eq!(ten_fold_accuracy(&scored), (1.0, 0.0));
        // One pair per fold is on the wrong side of any threshold: 3 of 4 per fold.
        let scored: Vec<(f32, bool)> = (0..40)
            .map(|i| match i % 4 {
                0 => (0.9, true),
                1 => (0.1, false),
                2 => (0.8, true),
                _ => (0.95, false),
            })
            .collect();
        let (mean, std) = ten_fold_accuracy(&scored);
        assert!((mean - 0.75).abs() < 1e-12 && std < 1e-12, "{mean} {std}");
    }
}
