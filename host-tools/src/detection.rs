//! `eq eval-det`: mean average precision of a detector at IoU 0.5, VOC style, against
//! COCO-json or VOC-xml annotations, or against the FP32 model's own detections
//! (pseudo-labels) on unlabelled images.
//!
//! Detections are the rows `label, score, xmin, ymin, xmax, ymax` that ncnn's detection heads
//! (DetectionOutput, Yolov3DetectionOutput, YoloDetectionOutput) write, coordinates relative
//! to the input (0..1), label 1.. (0 is background; rows with a negative label are padding).
//! Ground truth is brought to the same frame: pixel boxes are divided by the image size, so
//! the image must be stretched to the input (`--resize stretch`, the default), not cropped.
//!
//! AP per class (every class with ground truth counts): detections sorted by score, each
//! matched to the unmatched ground-truth box of its image and class with the highest IoU if
//! that IoU is at least 0.5 (a true positive), otherwise a false positive; a match with a
//! `difficult` VOC box counts as neither. IoU is of continuous boxes (no +1 pixel).
//! 11-point AP (VOC2007) averages the best precision at recall >= 0, 0.1, ..., 1; all-point
//! AP (VOC2010+) is the area under the precision envelope.
//!
//! mAP needs the whole precision-recall curve, so the detection layers of the evaluated model
//! (and of the pseudo-label model) run with a low confidence threshold
//! ([`with_confidence_threshold`], `--conf-threshold`, default 0.005 as darknet's `map`), not
//! the deployment cut stored in the param (0.55 in yolo-fastest: with it, a box whose score
//! moves from 0.56 to 0.54 is lost from the curve altogether).

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// One box, relative to the image (0..1).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BoxF {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
}

impl BoxF {
    fn area(&self) -> f32 {
        (self.x2 - self.x1).max(0.0) * (self.y2 - self.y1).max(0.0)
    }

    pub fn iou(&self, o: &BoxF) -> f32 {
        let w = (self.x2.min(o.x2) - self.x1.max(o.x1)).max(0.0);
        let h = (self.y2.min(o.y2) - self.y1.max(o.y1)).max(0.0);
        let inter = w * h;
        let union = self.area() + o.area() - inter;
        if union > 0.0 {
            inter / union
        } else {
            0.0
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Detection {
    pub label: u32,
    pub score: f32,
    pub bbox: BoxF,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Truth {
    pub label: u32,
    pub bbox: BoxF,
    pub difficult: bool,
}

/// Detection rows of one output blob (`w = 6`); padding rows (label < 0) and background
/// (label 0) are dropped.
/// The key of the confidence threshold in ncnn's detection layers.
fn confidence_key(kind: &str) -> Option<u32> {
    match kind {
        "DetectionOutput" => Some(4),
        "YoloDetectionOutput" | "Yolov3DetectionOutput" => Some(2),
        _ => None,
    }
}

/// The text of `param` (a text or binary .param; `file` names it in errors) with every
/// detection layer's confidence threshold set to `threshold`; None when it has no detection
/// layer.
pub fn with_confidence_threshold(
    param: &[u8],
    file: &str,
    threshold: f32,
) -> Result<Option<String>> {
    let parsed = eq_runtime::model::parse_param(param, file)?;
    if !parsed
        .layers
        .iter()
        .any(|l| confidence_key(&l.kind).is_some())
    {
        return Ok(None);
    }
    let mut w = crate::ncnn_writer::ParamWriter::new();
    for rec in &parsed.layers {
        let layer = w
            .copy_layer(rec)
            .with_context(|| format!("{file}: setting the detection threshold"))?;
        if let Some(key) = confidence_key(&rec.kind) {
            layer.float(key, threshold);
        }
    }
    Ok(Some(w.to_text()?))
}

pub fn parse_rows(data: &[f32], w: usize) -> Result<Vec<Detection>> {
    if w != 6 || !data.len().is_multiple_of(6) {
        bail!("a detection output has rows of 6 values (label, score, box); got width {w}");
    }
    Ok(data
        .chunks_exact(6)
        .filter(|r| r[0] >= 1.0)
        .map(|r| Detection {
            label: r[0] as u32,
            score: r[1],
            bbox: BoxF {
                x1: r[2],
                y1: r[3],
                x2: r[4],
                y2: r[5],
            },
        })
        .collect())
}

/// AP of every class with ground truth, at IoU `threshold`: (11-point, all-point) by label.
pub fn average_precision(
    detections: &[Vec<Detection>],
    truths: &[Vec<Truth>],
    threshold: f32,
) -> BTreeMap<u32, (f64, f64)> {
    let mut labels: Vec<u32> = truths
        .iter()
        .flatten()
        .filter(|t| !t.difficult)
        .map(|t| t.label)
        .collect();
    labels.sort_unstable();
    labels.dedup();
    let mut out = BTreeMap::new();
    for label in labels {
        let curve = pr_curve(detections, truths, threshold, Some(label));
        out.insert(label, (ap_11_point(&curve), ap_all_point(&curve)));
    }
    out
}

/// All-point AP of every class's detections pooled in one ranking (a detection still matches
/// only a box of its class, at IoU `threshold`): one precision-recall curve over all boxes,
/// so one box more or less moves it by about 1 / boxes instead of 1 / (boxes of its class x
/// classes) as the mean over classes does. 0 without ground truth.
pub fn pooled_average_precision(
    detections: &[Vec<Detection>],
    truths: &[Vec<Truth>],
    threshold: f32,
) -> f64 {
    ap_all_point(&pr_curve(detections, truths, threshold, None))
}

/// The (recall, precision) points of the detections of class `label` (None: of every class,
/// ranked together), best score first; a detection matches the unused box of its own class
/// it overlaps most at IoU >= `threshold`, boxes marked difficult neither count nor match.
/// Empty without ground truth.
fn pr_curve(
    detections: &[Vec<Detection>],
    truths: &[Vec<Truth>],
    threshold: f32,
    label: Option<u32>,
) -> Vec<(f64, f64)> {
    let of_class = |l: u32| label.is_none_or(|x| x == l);
    let positives = truths
        .iter()
        .flatten()
        .filter(|t| of_class(t.label) && !t.difficult)
        .count();
    if positives == 0 {
        return Vec::new();
    }
    let mut dets: Vec<(usize, &Detection)> = detections
        .iter()
        .enumerate()
        .flat_map(|(i, ds)| ds.iter().filter(|d| of_class(d.label)).map(move |d| (i, d)))
        .collect();
    // Stable: equal scores keep image order, so the result is deterministic.
    dets.sort_by(|a, b| b.1.score.total_cmp(&a.1.score));
    let mut used: Vec<Vec<bool>> = truths.iter().map(|t| vec![false; t.len()]).collect();
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut curve = Vec::with_capacity(dets.len());
    for (img, d) in dets {
        let best = truths[img]
            .iter()
            .enumerate()
            .filter(|(_, t)| t.label == d.label)
            .map(|(k, t)| (k, t.bbox.iou(&d.bbox)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        match best {
            Some((k, iou)) if iou >= threshold => {
                if truths[img][k].difficult {
                    continue;
                }
                if used[img][k] {
                    fp += 1;
                } else {
                    used[img][k] = true;
                    tp += 1;
                }
            }
            _ => fp += 1,
        }
        curve.push((tp as f64 / positives as f64, tp as f64 / (tp + fp) as f64));
    }
    curve
}

/// Mean over recall thresholds 0, 0.1, ..., 1 of the best precision at that recall or above.
fn ap_11_point(curve: &[(f64, f64)]) -> f64 {
    (0..=10)
        .map(|t| {
            let r = t as f64 / 10.0;
            curve
                .iter()
                .filter(|(rec, _)| *rec >= r - 1e-12)
                .map(|&(_, p)| p)
                .fold(0.0, f64::max)
        })
        .sum::<f64>()
        / 11.0
}

/// Area under the precision envelope (precision made non-increasing in recall).
fn ap_all_point(curve: &[(f64, f64)]) -> f64 {
    let mut envelope: Vec<(f64, f64)> = curve.to_vec();
    for i in (0..envelope.len().saturating_sub(1)).rev() {
        envelope[i].1 = envelope[i].1.max(envelope[i + 1].1);
    }
    let mut area = 0.0;
    let mut last_recall = 0.0;
    for (r, p) in envelope {
        area += (r - last_recall) * p;
        last_recall = r;
    }
    area
}

/// COCO-style instances json: for each image file name, its boxes relative to the image.
/// Model labels are the categories in ascending id order, from 1 (ncnn's label 0 is the
/// background).
pub fn read_coco(path: &Path) -> Result<HashMap<String, Vec<Truth>>> {
    #[derive(serde::Deserialize)]
    struct Coco {
        images: Vec<Image>,
        annotations: Vec<Annotation>,
        categories: Vec<Category>,
    }
    #[derive(serde::Deserialize)]
    struct Image {
        id: u64,
        file_name: String,
        width: f32,
        height: f32,
    }
    #[derive(serde::Deserialize)]
    struct Annotation {
        image_id: u64,
        category_id: u64,
        bbox: [f32; 4],
        #[serde(default)]
        iscrowd: u8,
    }
    #[derive(serde::Deserialize)]
    struct Category {
        id: u64,
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let coco: Coco = serde_json::from_str(&text)
        .with_context(|| format!("{}: not COCO json", path.display()))?;
    let mut ids: Vec<u64> = coco.categories.iter().map(|c| c.id).collect();
    ids.sort_unstable();
    let label_of: HashMap<u64, u32> = ids
        .iter()
        .enumerate()
        .map(|(i, &id)| (id, i as u32 + 1))
        .collect();
    let images: HashMap<u64, &Image> = coco.images.iter().map(|i| (i.id, i)).collect();
    let mut out: HashMap<String, Vec<Truth>> = coco
        .images
        .iter()
        .map(|i| (i.file_name.clone(), Vec::new()))
        .collect();
    for a in &coco.annotations {
        let img = images.get(&a.image_id).ok_or_else(|| {
            anyhow!(
                "{}: annotation for unknown image id {}",
                path.display(),
                a.image_id
            )
        })?;
        let label = *label_of
            .get(&a.category_id)
            .ok_or_else(|| anyhow!("{}: unknown category id {}", path.display(), a.category_id))?;
        if !(img.width > 0.0 && img.height > 0.0) {
            bail!("{}: image `{}` has no size", path.display(), img.file_name);
        }
        let [x, y, w, h] = a.bbox;
        out.entry(img.file_name.clone()).or_default().push(Truth {
            label,
            bbox: BoxF {
                x1: x / img.width,
                y1: y / img.height,
                x2: (x + w) / img.width,
                y2: (y + h) / img.height,
            },
            // Crowd regions are not objects to find: like VOC's difficult ones.
            difficult: a.iscrowd != 0,
        });
    }
    Ok(out)
}

/// One VOC annotation file: its image file name and boxes (relative to its size). `classes`
/// lists the model's labels in order (label 1 = the first line).
pub fn read_voc(path: &Path, classes: &[String]) -> Result<(String, Vec<Truth>)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let doc = roxmltree::Document::parse(&text)
        .with_context(|| format!("{}: not XML", path.display()))?;
    let root = doc.root_element();
    let text_of = |n: roxmltree::Node, name: &str| -> Result<String> {
        child(n, name)
            .and_then(|c| c.text())
            .map(|t| t.trim().to_string())
            .ok_or_else(|| anyhow!("{}: missing <{name}>", path.display()))
    };
    let number = |n: roxmltree::Node, name: &str| -> Result<f32> {
        let t = text_of(n, name)?;
        t.parse()
            .map_err(|_| anyhow!("{}: <{name}> `{t}` is not a number", path.display()))
    };
    let file = text_of(root, "filename")?;
    let size = child(root, "size").ok_or_else(|| anyhow!("{}: missing <size>", path.display()))?;
    let (w, h) = (number(size, "width")?, number(size, "height")?);
    if !(w > 0.0 && h > 0.0) {
        bail!("{}: image size {w}x{h}", path.display());
    }
    let mut truths = Vec::new();
    for obj in root.children().filter(|c| c.has_tag_name("object")) {
        let name = text_of(obj, "name")?;
        let label = classes
            .iter()
            .position(|c| *c == name)
            .ok_or_else(|| anyhow!("{}: class `{name}` is not in --classes", path.display()))?;
        let b = child(obj, "bndbox")
            .ok_or_else(|| anyhow!("{}: object without <bndbox>", path.display()))?;
        let difficult = child(obj, "difficult")
            .and_then(|d| d.text())
            .is_some_and(|t| t.trim() == "1");
        truths.push(Truth {
            label: label as u32 + 1,
            bbox: BoxF {
                x1: number(b, "xmin")? / w,
                y1: number(b, "ymin")? / h,
                x2: number(b, "xmax")? / w,
                y2: number(b, "ymax")? / h,
            },
            difficult,
        });
    }
    Ok((file, truths))
}

/// The first child element of `n` named `name`.
fn child<'a, 'i>(n: roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
    n.children().find(|c| c.has_tag_name(name))
}

/// The result of an evaluation.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct DetResult {
    /// mAP@0.5, percent.
    pub map_11_point: f64,
    pub map_all_point: f64,
    pub images: usize,
    pub truths: usize,
    pub detections: usize,
    /// Per label: (11-point, all-point) AP, percent.
    pub per_class: BTreeMap<u32, (f64, f64)>,
}

pub fn summarize(detections: &[Vec<Detection>], truths: &[Vec<Truth>]) -> DetResult {
    let ap = average_precision(detections, truths, 0.5);
    let mean = |f: fn(&(f64, f64)) -> f64| {
        if ap.is_empty() {
            0.0
        } else {
            100.0 * ap.values().map(f).sum::<f64>() / ap.len() as f64
        }
    };
    DetResult {
        map_11_point: mean(|a| a.0),
        map_all_point: mean(|a| a.1),
        images: truths.len(),
        truths: truths.iter().map(Vec::len).sum(),
        detections: detections.iter().map(Vec::len).sum(),
        per_class: ap
            .iter()
            .map(|(&k, &(a, b))| (k, (100.0 * a, 100.0 * b)))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_confidence_threshold_is_set_on_every_detection_layer() {
        let param = "7767517\n5 5\nInput a 0 1 a 0=3 1=2 2=27\nInput b 0 1 b 0=6 1=4 2=27\n\
                     Yolov3DetectionOutput det 2 1 a b out 0=4 1=3 2=0.55 3=0.45\n\
                     Input c 0 1 c 0=4\nReLU r 1 1 c d\n";
        let text = with_confidence_threshold(param.as_bytes(), "m.param", 0.005)
            .unwrap()
            .unwrap();
        let det = text.lines().find(|l| l.starts_with("Yolov3")).unwrap();
        assert!(
            det.contains(" 2=5e-3") && det.contains(" 3=4.5e-1") && !det.contains("5.5e-1"),
            "{det}"
        );
        let reparsed = eq_runtime::model::parse_param(text.as_bytes(), "t").unwrap();
        assert_eq!(reparsed.layers.len(), 5);
        // DetectionOutput keeps its threshold under key 4.
        let ssd = "7767517\n4 4\nInput l 0 1 l 0=8\nInput c 0 1 c 0=6\nInput p 0 1 p 0=8 1=2\n\
                   DetectionOutput d 3 1 l c p out 0=3 2=10 4=0.6\n";
        let text = with_confidence_threshold(ssd.as_bytes(), "s.param", 0.01)
            .unwrap()
            .unwrap();
        assert!(text.lines().last().unwrap().contains(" 4=1e-2"), "{text}");
        // No detection layer: nothing to rewrite.
        let plain = "7767517\n2 2\nInput c 0 1 c 0=4\nReLU r 1 1 c d\n";
        assert_eq!(
            with_confidence_threshold(plain.as_bytes(), "p", 0.01).unwrap(),
            None
        );
        let e = with_confidence_threshold(b"garbage", "g.param", 0.01).unwrap_err();
        assert!(format!("{e:#}").contains("g.param"), "{e:#}");
    }

    fn bx(x1: f32, y1: f32, x2: f32, y2: f32) -> BoxF {
        BoxF { x1, y1, x2, y2 }
    }

    fn det(label: u32, score: f32, b: BoxF) -> Detection {
        Detection {
            label,
            score,
            bbox: b,
        }
    }

    fn truth(label: u32, b: BoxF) -> Truth {
        Truth {
            label,
            bbox: b,
            difficult: false,
        }
    }

    #[test]
    fn iou_of_continuous_boxes() {
        let a = bx(0.0, 0.0, 2.0, 2.0);
        assert_eq!(a.iou(&a), 1.0);
        assert_eq!(a.iou(&bx(1.0, 0.0, 3.0, 2.0)), 2.0 / 6.0);
        assert_eq!(a.iou(&bx(2.0, 2.0, 3.0, 3.0)), 0.0);
        assert_eq!(bx(1.0, 1.0, 1.0, 1.0).iou(&bx(1.0, 1.0, 1.0, 1.0)), 0.0);
    }

    #[test]
    fn perfect_detections_give_ap_one() {
        let t = vec![vec![
            truth(1, bx(0.1, 0.1, 0.4, 0.4)),
            truth(2, bx(0.5, 0.5, 0.9, 0.9)),
        ]];
        let d = vec![vec![
            det(1, 0.9, bx(0.1, 0.1, 0.4, 0.4)),
            det(2, 0.8, bx(0.5, 0.5, 0.9, 0.9)),
        ]];
        let r = summarize(&d, &t);
        assert_eq!((r.map_11_point, r.map_all_point), (100.0, 100.0));
    }

    /// Two images, three positives of class 1 (boxes a, b, c); class-1 detections by score:
    /// TP, FP (duplicate of a matched box), FP (IoU below 0.5), TP; and a class-3 detection
    /// on c scored above them all.
    fn two_images() -> (Vec<Vec<Truth>>, Vec<Vec<Detection>>, [BoxF; 2]) {
        let a = bx(0.0, 0.0, 0.5, 0.5);
        let b = bx(0.5, 0.5, 1.0, 1.0);
        let c = bx(0.0, 0.5, 0.5, 1.0);
        let t = vec![vec![truth(1, a), truth(1, b)], vec![truth(1, c)]];
        let d = vec![
            vec![
                det(1, 0.9, a),
                det(1, 0.8, a),
                det(1, 0.7, bx(0.5, 0.5, 0.6, 0.6)),
            ],
            vec![det(1, 0.6, c), det(3, 0.99, c)],
        ];
        (t, d, [a, b])
    }

    /// [`two_images`]: precision / recall after each class-1 detection: (1, 1/3), (1/2, 1/3),
    /// (1/3, 1/3), (1/2, 2/3); the third positive is never found.
    #[test]
    fn hand_computed_ap() {
        let (t, d, _) = two_images();
        let ap = average_precision(&d, &t, 0.5);
        assert_eq!(ap.len(), 1, "label 3 has no ground truth: not averaged");
        let (p11, all) = ap[&1];
        // 11-point: recall >= 0, .1, .2, .3 -> best precision 1 (at recall 1/3); .4 .. .6 ->
        // 1/2 (recall 2/3); .7 .. 1 -> 0.
        assert!(
            (p11 - (4.0 * 1.0 + 3.0 * 0.5) / 11.0).abs() < 1e-12,
            "{p11}"
        );
        // All-point: envelope 1 up to recall 1/3, then 1/2 up to 2/3.
        assert!((all - (1.0 / 3.0 + 0.5 / 3.0)).abs() < 1e-12, "{all}");
    }

    #[test]
    fn pooled_ap_ranks_all_classes_together_and_matches_within_a_class() {
        let (t, d, [a, b]) = two_images();
        // Ranked: 0.99 (label 3 on a label-1 box: false), 0.9 hit, 0.8 duplicate, 0.7 miss,
        // 0.6 hit: envelope 1/2 up to recall 1/3, then 2/5 up to 2/3.
        let ap = pooled_average_precision(&d, &t, 0.5);
        assert!((ap - (0.5 / 3.0 + 0.4 / 3.0)).abs() < 1e-12, "{ap}");
        let t = vec![vec![truth(1, a), truth(2, b)]];
        let d = vec![vec![det(2, 0.9, b), det(1, 0.8, a)]];
        assert_eq!(pooled_average_precision(&d, &t, 0.5), 1.0);
        assert_eq!(pooled_average_precision(&d, &[vec![]], 0.5), 0.0);
    }

    #[test]
    fn difficult_boxes_count_neither_way() {
        let a = bx(0.0, 0.0, 0.5, 0.5);
        let t = vec![vec![
            truth(1, a),
            Truth {
                label: 1,
                bbox: bx(0.5, 0.5, 1.0, 1.0),
                difficult: true,
            },
        ]];
        let d = vec![vec![det(1, 0.9, bx(0.5, 0.5, 1.0, 1.0)), det(1, 0.5, a)]];
        assert_eq!(average_precision(&d, &t, 0.5)[&1], (1.0, 1.0));
    }

    #[test]
    fn rows_drop_padding_and_background() {
        let rows = [
            1.0, 0.9, 0.1, 0.1, 0.2, 0.2, //
            0.0, 0.8, 0.1, 0.1, 0.2, 0.2, //
            -1.0, 0.0, 0.0, 0.0, 0.0, 0.0,
        ];
        let d = parse_rows(&rows, 6).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].label, 1);
        assert!(parse_rows(&rows, 5).is_err());
    }

    #[test]
    fn coco_and_voc_annotations() {
        let dir = std::env::temp_dir().join(format!("eq-det-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let coco = dir.join("ann.json");
        std::fs::write(
            &coco,
            r#"{"images": [{"id": 7, "file_name": "a.jpg", "width": 200, "height": 100},
                           {"id": 8, "file_name": "b.jpg", "width": 10, "height": 10}],
                "annotations": [{"image_id": 7, "category_id": 90, "bbox": [20, 10, 100, 50]},
                                {"image_id": 7, "category_id": 3, "bbox": [0, 0, 10, 10],
                                 "iscrowd": 1}],
                "categories": [{"id": 90, "name": "x"}, {"id": 3, "name": "y"}]}"#,
        )
        .unwrap();
        let m = read_coco(&coco).unwrap();
        assert!(m["b.jpg"].is_empty());
        let a = &m["a.jpg"];
        assert_eq!(
            a[0].label, 2,
            "category 90 is the second id in ascending order"
        );
        assert_eq!(a[0].bbox, bx(0.1, 0.1, 0.6, 0.6));
        assert!(a[1].difficult && a[1].label == 1);
        std::fs::write(&coco, "{\"images\": 3}").unwrap();
        assert!(read_coco(&coco)
            .unwrap_err()
            .to_string()
            .contains("not COCO json"));

        let voc = dir.join("a.xml");
        std::fs::write(
            &voc,
            "<annotation><filename>a.jpg</filename><size><width>200</width>\
             <height>100</height><depth>3</depth></size><object><name>dog</name>\
             <difficult>1</difficult><bndbox><xmin>20</xmin><ymin>10</ymin><xmax>120</xmax>\
             <ymax>60</ymax></bndbox></object></annotation>",
        )
        .unwrap();
        let classes = vec!["cat".to_string(), "dog".to_string()];
        let (file, t) = read_voc(&voc, &classes).unwrap();
        assert_eq!(file, "a.jpg");
        assert_eq!(t[0].label, 2);
        assert_eq!(t[0].bbox, bx(0.1, 0.1, 0.6, 0.6));
        assert!(t[0].difficult);
        let err = read_voc(&voc, &classes[..1]).unwrap_err().to_string();
        assert!(err.contains("`dog` is not in --classes"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
