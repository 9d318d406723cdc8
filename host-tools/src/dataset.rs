//! Image sets and preprocessing: find images, decode them, resize them the way PIL's
//! `Image.resize(..., BILINEAR)` does, and lay them out as a planar (c, h, w) float tensor.
//!
//! The resize mirrors PIL bit for bit (for 8-bit images) so that inputs match the ones the
//! reference outputs in shared/data/reference were computed from.

use anyhow::{bail, Context, Result};
use image::RgbImage;
use std::borrow::Cow;
use std::path::{Path, PathBuf};

/// Channel order of the model input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColorOrder {
    Rgb,
    Bgr,
}

/// How the decoded image is brought to the model's input size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resize {
    /// Scale each side to the target size; the aspect ratio is not kept.
    Stretch,
    /// Scale the short side to `short` (keeping the aspect ratio), then crop the centre
    /// (torchvision `Resize(short)` + `CenterCrop(size)`).
    ShortCrop { short: u32 },
}

/// Turns one image into a model input: value = (pixel - mean[c]) * norm[c], where `c` is the
/// output channel (so `mean` and `norm` are given in the output colour order).
#[derive(Clone, Debug, PartialEq)]
pub struct Preprocess {
    /// Output (width, height).
    pub size: (u32, u32),
    pub mean: [f32; 3],
    pub norm: [f32; 3],
    pub order: ColorOrder,
    pub resize: Resize,
}

impl Preprocess {
    /// SqueezeNet v1.1 (Caffe): 227x227, BGR, minus (104, 117, 123).
    pub fn squeezenet() -> Preprocess {
        Preprocess {
            size: (227, 227),
            mean: [104.0, 117.0, 123.0],
            norm: [1.0; 3],
            order: ColorOrder::Bgr,
            resize: Resize::Stretch,
        }
    }

    /// torchvision MobileNetV2: bilinear resize to 224x224, RGB, ImageNet mean / std on 0..1.
    pub fn mobilenet_v2() -> Preprocess {
        let mean = [0.485f32, 0.456, 0.406];
        let std = [0.229f32, 0.224, 0.225];
        Preprocess {
            size: (224, 224),
            mean: mean.map(|m| 255.0 * m),
            norm: std.map(|s| 1.0 / (255.0 * s)),
            order: ColorOrder::Rgb,
            resize: Resize::Stretch,
        }
    }

    /// MobileFaceNet: 112x112 aligned faces, RGB, raw 0..255 (the graph normalises itself).
    pub fn mobilefacenet() -> Preprocess {
        Preprocess {
            size: (112, 112),
            mean: [0.0; 3],
            norm: [1.0; 3],
            order: ColorOrder::Rgb,
            resize: Resize::Stretch,
        }
    }

    /// A preset by model name: `squeezenet`, `mobilenet_v2` or `mobilefacenet`.
    pub fn preset(name: &str) -> Option<Preprocess> {
        match name {
            "squeezenet" | "squeezenet_v1.1" => Some(Preprocess::squeezenet()),
            "mobilenet_v2" | "mobilenetv2" => Some(Preprocess::mobilenet_v2()),
            "mobilefacenet" => Some(Preprocess::mobilefacenet()),
            _ => None,
        }
    }

    /// Number of floats in one output tensor (3 * h * w).
    pub fn len(&self) -> usize {
        3 * self.size.0 as usize * self.size.1 as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The image after the resize step (borrowed when it already has the output size).
    pub fn resized<'a>(&self, img: &'a RgbImage) -> Result<Cow<'a, RgbImage>> {
        let (w, h) = self.size;
        if w == 0 || h == 0 {
            bail!("preprocess: empty output size {w}x{h}");
        }
        if img.width() == 0 || img.height() == 0 {
            bail!("preprocess: empty image");
        }
        match self.resize {
            Resize::Stretch => Ok(resize_bilinear(img, w, h)),
            Resize::ShortCrop { short } => {
                let (nw, nh) = short_side_size(img.width(), img.height(), short);
                if nw < w || nh < h {
                    bail!("preprocess: short side {short} gives {nw}x{nh}, smaller than the {w}x{h} crop");
                }
                let scaled = resize_bilinear(img, nw, nh);
                let left = half_round_even(nw - w);
                let top = half_round_even(nh - h);
                Ok(Cow::Owned(
                    image::imageops::crop_imm(scaled.as_ref(), left, top, w, h).to_image(),
                ))
            }
        }
    }

    /// Preprocesses a decoded image into a new (c, h, w) tensor.
    pub fn apply(&self, img: &RgbImage) -> Result<Vec<f32>> {
        let mut out = vec![0.0; self.len()];
        self.apply_into(img, &mut out)?;
        Ok(out)
    }

    /// Preprocesses a decoded image into `out` (length 3 * h * w), e.g. a net's input blob.
    pub fn apply_into(&self, img: &RgbImage, out: &mut [f32]) -> Result<()> {
        if out.len() != self.len() {
            bail!(
                "preprocess: output holds {} values, {}x{}x3 needs {}",
                out.len(),
                self.size.0,
                self.size.1,
                self.len()
            );
        }
        let img = self.resized(img)?;
        let plane = self.len() / 3;
        for (c, dst) in out.chunks_exact_mut(plane).enumerate() {
            let src_channel = match self.order {
                ColorOrder::Rgb => c,
                ColorOrder::Bgr => 2 - c,
            };
            let (mean, norm) = (self.mean[c], self.norm[c]);
            for (d, px) in dst.iter_mut().zip(img.pixels()) {
                *d = (px.0[src_channel] as f32 - mean) * norm;
            }
        }
        Ok(())
    }

    /// Decodes and preprocesses the image file at `path`.
    pub fn load(&self, path: &Path) -> Result<Vec<f32>> {
        self.apply(&load_rgb(path)?)
    }

    /// Decodes and preprocesses the image file at `path` into `out`.
    pub fn load_into(&self, path: &Path, out: &mut [f32]) -> Result<()> {
        self.apply_into(&load_rgb(path)?, out)
    }
}

/// Decodes an image file (format detected from its content) to 8-bit RGB; grey images are
/// replicated and alpha is dropped, as PIL's `convert("RGB")` does.
///
/// JPEGs are decoded with libjpeg-turbo's algorithms (via mozjpeg: integer IDCT, fancy
/// chroma upsampling), as PIL and OpenCV do: the `image` crate's decoder differs by up to
/// 4 levels on a fifth of the pixels, enough to flip 0.7 % of SqueezeNet's top-1 answers.
pub fn load_rgb(path: &Path) -> Result<RgbImage> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        // libjpeg pads a truncated file with grey and only warns; PIL refuses it, and so do we.
        if !bytes.windows(2).any(|w| w == [0xFF, 0xD9]) {
            bail!(
                "cannot decode {}: truncated JPEG (no end marker)",
                path.display()
            );
        }
        if let Ok(img) = decode_jpeg(&bytes) {
            return Ok(img);
        }
        // Fall through: the image crate reports the error, or handles e.g. CMYK files.
    }
    let img = image::ImageReader::new(std::io::Cursor::new(&bytes))
        .with_guessed_format()
        .with_context(|| format!("cannot read {}", path.display()))?
        .decode()
        .with_context(|| format!("cannot decode {}", path.display()))?;
    Ok(img.to_rgb8())
}

/// Decodes a JPEG to RGB with mozjpeg (libjpeg-turbo's decoder).
fn decode_jpeg(bytes: &[u8]) -> Result<RgbImage> {
    // mozjpeg reports libjpeg errors by unwinding; turn them back into errors.
    let decoded = std::panic::catch_unwind(|| -> std::io::Result<(usize, usize, Vec<[u8; 3]>)> {
        let mut d = mozjpeg::Decompress::new_mem(bytes)?;
        d.dct_method(mozjpeg::DctMethod::IntegerSlow);
        d.do_fancy_upsampling(true);
        let mut started = d.rgb()?;
        let (w, h) = (started.width(), started.height());
        let pixels = started.read_scanlines::<[u8; 3]>()?;
        started.finish()?;
        Ok((w, h, pixels))
    });
    match decoded {
        Ok(Ok((w, h, pixels))) => {
            let raw: Vec<u8> = pixels.into_iter().flatten().collect();
            RgbImage::from_raw(w as u32, h as u32, raw)
                .context("JPEG decoder returned too few rows")
        }
        Ok(Err(e)) => Err(e.into()),
        Err(_) => bail!("libjpeg error"),
    }
}

/// Output size of torchvision `Resize(short)`: the short side becomes `short`, the long side
/// is scaled in proportion and truncated.
fn short_side_size(w: u32, h: u32, short: u32) -> (u32, u32) {
    let (s, l) = if w <= h { (w, h) } else { (h, w) };
    let long = (short as u64 * l as u64) as f64 / s as f64;
    let long = long as u32;
    if w <= h {
        (short, long)
    } else {
        (long, short)
    }
}

/// `round(n / 2)` with Python's round-half-to-even, as torchvision's centre crop uses.
fn half_round_even(n: u32) -> u32 {
    let half = n / 2;
    if n % 2 == 1 && half % 2 == 1 {
        half + 1
    } else {
        half
    }
}

/// Fixed-point fraction bits of PIL's 8-bit resampling coefficients.
const PRECISION_BITS: u32 = 22;

/// Filter taps of one resampling pass: output index i reads inputs
/// `start[i] .. start[i] + count[i]` with weights `weights[i * ksize ..]`.
#[derive(Debug)]
struct Taps {
    start: Vec<usize>,
    count: Vec<usize>,
    ksize: usize,
    weights: Vec<i32>,
}

/// PIL's bilinear (triangle) taps from `in_size` to `out_size` samples. When shrinking, the
/// triangle is widened by the scale factor (antialiasing). Weights are normalised per output
/// sample, then rounded to fixed point.
fn bilinear_taps(in_size: usize, out_size: usize) -> Taps {
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = filter_scale; // the triangle's support is 1 at scale 1
    let ksize = support.ceil() as usize * 2 + 1;
    let mut taps = Taps {
        start: Vec::with_capacity(out_size),
        count: Vec::with_capacity(out_size),
        ksize,
        weights: vec![0; out_size * ksize],
    };
    let mut w = vec![0.0f64; ksize];
    for i in 0..out_size {
        let center = (i as f64 + 0.5) * scale;
        // `as` truncates toward zero like C's (int) cast; PIL relies on it for rounding.
        let first = ((center - support + 0.5) as i64).max(0) as usize;
        let last = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let count = last.saturating_sub(first);
        let mut sum = 0.0;
        for (k, wk) in w.iter_mut().enumerate().take(count) {
            let x = ((k + first) as f64 - center + 0.5) / filter_scale;
            *wk = (1.0 - x.abs()).max(0.0);
            sum += *wk;
        }
        for (k, &wk) in w.iter().enumerate().take(count) {
            let wk = if sum != 0.0 { wk / sum } else { wk };
            let fixed = wk * (1 << PRECISION_BITS) as f64;
            // Round half away from zero, then truncate, as PIL does.
            taps.weights[i * ksize + k] = if fixed < 0.0 {
                (fixed - 0.5) as i32
            } else {
                (fixed + 0.5) as i32
            };
        }
        taps.start.push(first);
        taps.count.push(count);
    }
    taps
}

/// Rounds a fixed-point accumulator (which already includes the +0.5 offset) to a byte.
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// One pass over `src` (`n` lines of `len` samples, samples `stride` pixels apart and lines
/// `line_stride` pixels apart, 3 channels) producing `dst` laid out the same way with the
/// resampled axis of length `taps.start.len()`.
fn resample_axis(
    src: &[u8],
    dst: &mut [u8],
    lines: usize,
    taps: &Taps,
    (src_step, src_line): (usize, usize),
    (dst_step, dst_line): (usize, usize),
) {
    for line in 0..lines {
        for (i, (&first, &count)) in taps.start.iter().zip(&taps.count).enumerate() {
            let weights = &taps.weights[i * taps.ksize..i * taps.ksize + count];
            let mut acc = [1i32 << (PRECISION_BITS - 1); 3];
            for (k, &wk) in weights.iter().enumerate() {
                let p = 3 * (line * src_line + (first + k) * src_step);
                for c in 0..3 {
                    acc[c] += src[p + c] as i32 * wk;
                }
            }
            let q = 3 * (line * dst_line + i * dst_step);
            for c in 0..3 {
                dst[q + c] = clip8(acc[c]);
            }
        }
    }
}

/// Resizes like PIL's `Image.resize((w, h), Image.BILINEAR)` on an 8-bit RGB image: a
/// horizontal pass, rounding to bytes, then a vertical pass; an axis whose size does not
/// change is not resampled, so the same size returns the image unchanged.
pub fn resize_bilinear(img: &RgbImage, w: u32, h: u32) -> Cow<'_, RgbImage> {
    let (in_w, in_h) = (img.width() as usize, img.height() as usize);
    let (w, h) = (w as usize, h as usize);
    let mut cur = Cow::Borrowed(img);
    if w != in_w {
        let taps = bilinear_taps(in_w, w);
        let mut out = vec![0u8; 3 * w * in_h];
        resample_axis(cur.as_raw(), &mut out, in_h, &taps, (1, in_w), (1, w));
        cur = Cow::Owned(RgbImage::from_raw(w as u32, in_h as u32, out).expect("buffer size"));
    }
    if h != in_h {
        let taps = bilinear_taps(in_h, h);
        let mut out = vec![0u8; 3 * w * h];
        // Columns are the lines here: samples are a row apart, lines one pixel apart.
        resample_axis(cur.as_raw(), &mut out, w, &taps, (w, 1), (w, 1));
        cur = Cow::Owned(RgbImage::from_raw(w as u32, h as u32, out).expect("buffer size"));
    }
    cur
}

/// True for file names ending in .jpg, .jpeg or .png (any case).
pub fn is_image_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
        .unwrap_or(false)
}

/// Every .jpg / .jpeg / .png file directly in `dir` (not in subfolders), sorted by name.
pub fn list_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    let mut paths = Vec::new();
    for e in entries {
        let path = e
            .with_context(|| format!("cannot list {}", dir.display()))?
            .path();
        if is_image_name(&path) && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    Ok(paths)
}

/// The image paths in a list file: one per line, relative to the list file's folder (absolute
/// paths are kept). Blank lines and lines starting with `#` are ignored.
pub fn read_list(file: &Path) -> Result<Vec<PathBuf>> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let base = file.parent().unwrap_or(Path::new(""));
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| base.join(l))
        .collect())
}

/// Where the images of a run come from (`--images DIR` or `--list FILE`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageSource {
    Dir(PathBuf),
    List(PathBuf),
}

/// The image paths of `source`, at most `count` of them (the first ones in order).
/// An empty result is an error.
pub fn collect_images(source: &ImageSource, count: Option<usize>) -> Result<Vec<PathBuf>> {
    let (mut paths, what) = match source {
        ImageSource::Dir(d) => (list_dir(d)?, d),
        ImageSource::List(f) => (read_list(f)?, f),
    };
    if let Some(n) = count {
        paths.truncate(n);
    }
    if paths.is_empty() {
        bail!("no images in {}", what.display());
    }
    Ok(paths)
}

/// `n` of `paths` drawn uniformly without replacement, seeded, returned in their original
/// order (all of them when there are no more than `n`).
pub fn sample(paths: Vec<PathBuf>, n: usize, seed: u64) -> Vec<PathBuf> {
    if paths.len() <= n {
        return paths;
    }
    // Partial Fisher-Yates over the indices, then back to list order.
    let mut rng = eq_runtime::rng::Rng::new(seed);
    let mut idx: Vec<usize> = (0..paths.len()).collect();
    for i in 0..n {
        let j = rng.range(i as i64, idx.len() as i64 - 1) as usize;
        idx.swap(i, j);
    }
    let mut chosen = idx[..n].to_vec();
    chosen.sort_unstable();
    chosen.into_iter().map(|i| paths[i].clone()).collect()
}

/// Handles a failed image load: in strict mode the error is returned; otherwise a warning
/// naming the file is printed on stderr and the image is skipped (`Ok(None)`).
pub fn skip_unreadable<T>(path: &Path, loaded: Result<T>, strict: bool) -> Result<Option<T>> {
    match loaded {
        Ok(v) => Ok(Some(v)),
        Err(e) if strict => Err(e),
        Err(e) => {
            eprintln!("warning: skipping {}: {e:#}", path.display());
            Ok(None)
        }
    }
}

/// Loads and preprocesses every image of `paths`, skipping unreadable ones (with a warning)
/// or failing on them in strict mode. Returns the images that loaded, in order.
pub fn load_all(
    paths: &[PathBuf],
    prep: &Preprocess,
    strict: bool,
) -> Result<Vec<(PathBuf, Vec<f32>)>> {
    let mut out = Vec::with_capacity(paths.len());
    for p in paths {
        if let Some(t) = skip_unreadable(p, prep.load(p), strict)? {
            out.push((p.clone(), t));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    #[test]
    fn sample_draws_from_the_whole_list_in_list_order() {
        let paths: Vec<PathBuf> = (0..1000)
            .map(|i| PathBuf::from(format!("{i:04}.jpg")))
            .collect();
        let a = sample(paths.clone(), 50, 3);
        assert_eq!(a, sample(paths.clone(), 50, 3), "same seed, same draw");
        assert_ne!(
            a,
            sample(paths.clone(), 50, 4),
            "another seed, another draw"
        );
        assert_eq!(a.len(), 50);
        assert!(a.windows(2).all(|w| w[0] < w[1]), "list order, no repeats");
        // Spread over the list, not its first names: some draw from every fifth of it.
        for fifth in 0..5 {
            let lo = format!("{:04}", fifth * 200);
            let hi = format!("{:04}", fifth * 200 + 200);
            assert!(a.iter().any(|p| {
                let n = p.to_str().unwrap();
                n >= lo.as_str() && n < hi.as_str()
            }));
        }
        assert_eq!(sample(paths[..7].to_vec(), 50, 3), paths[..7].to_vec());
    }

    /// A fresh empty folder under the system temp dir for one test.
    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("eq-dataset-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn gradient(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            Rgb([
                (x * 37 + y * 11) as u8,
                (x * 5 + y * 53) as u8,
                (x * y) as u8,
            ])
        })
    }

    #[test]
    fn preprocessing_math_on_png() {
        let dir = temp_dir("math");
        let path = dir.join("tiny.png");
        // 2x1 image: pixel (0,0) = (10, 20, 30), (1,0) = (200, 100, 0).
        let img = RgbImage::from_raw(2, 1, vec![10, 20, 30, 200, 100, 0]).unwrap();
        img.save(&path).unwrap();

        let bgr = Preprocess {
            size: (2, 1),
            mean: [1.0, 2.0, 3.0],
            norm: [0.5, 1.0, 2.0],
            order: ColorOrder::Bgr,
            resize: Resize::Stretch,
        };
        // Planar: channel 0 = B, 1 = G, 2 = R.
        let want = [
            (30.0 - 1.0) * 0.5,
            (0.0 - 1.0) * 0.5,
            20.0 - 2.0,
            100.0 - 2.0,
            (10.0 - 3.0) * 2.0,
            (200.0 - 3.0) * 2.0,
        ];
        assert_eq!(bgr.load(&path).unwrap(), want);

        let rgb = Preprocess {
            order: ColorOrder::Rgb,
            ..bgr
        };
        let want = [
            (10.0 - 1.0) * 0.5,
            (200.0 - 1.0) * 0.5,
            20.0 - 2.0,
            100.0 - 2.0,
            (30.0 - 3.0) * 2.0,
            (0.0 - 3.0) * 2.0,
        ];
        assert_eq!(rgb.load(&path).unwrap(), want);

        let mut small = [0.0; 5];
        assert!(rgb.load_into(&path, &mut small).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn presets() {
        let m = Preprocess::mobilenet_v2();
        assert_eq!(m.size, (224, 224));
        assert!((m.mean[0] - 123.675).abs() < 1e-4);
        assert!((m.norm[2] - 1.0 / 57.375).abs() < 1e-7);
        let s = Preprocess::preset("squeezenet").unwrap();
        assert_eq!(
            (s.size, s.order, s.mean),
            ((227, 227), ColorOrder::Bgr, [104.0, 117.0, 123.0])
        );
        assert_eq!(
            Preprocess::preset("mobilefacenet").unwrap().len(),
            3 * 112 * 112
        );
        assert!(Preprocess::preset("resnet").is_none());
    }

    #[test]
    fn resize_identity_is_exact() {
        let img = gradient(13, 7);
        let same = resize_bilinear(&img, 13, 7);
        assert!(matches!(same, Cow::Borrowed(_)));
        // Even when computed, unit-scale taps select exactly one pixel with weight 1.
        let taps = bilinear_taps(13, 13);
        for i in 0..13 {
            let k = &taps.weights[i * taps.ksize..i * taps.ksize + taps.count[i]];
            let ones: Vec<_> = k.iter().filter(|&&w| w != 0).collect();
            assert_eq!(ones, [&(1 << PRECISION_BITS)]);
            assert_eq!(taps.start[i] + k.iter().position(|&w| w != 0).unwrap(), i);
        }
        let p = Preprocess::squeezenet();
        let img = gradient(227, 227);
        let t = p.apply(&img).unwrap();
        let plane = 227 * 227;
        assert_eq!(t[5 * 227 + 9], img.get_pixel(9, 5).0[2] as f32 - 104.0);
        assert_eq!(t[plane + 3], img.get_pixel(3, 0).0[1] as f32 - 117.0);
    }

    #[test]
    fn resize_hand_computed() {
        // Downscale 4 -> 2: scale 2, triangle of half-width 2 around centres 1 and 3.
        // Output 0: centre 1.0, inputs 0..3 at distances 0.5, 0.5, 1.5 (scaled 0.25, 0.25,
        // 0.75) -> weights 0.75, 0.75, 0.25 / 1.75 = 3/7, 3/7, 1/7.
        let taps = bilinear_taps(4, 2);
        assert_eq!((taps.start[0], taps.count[0]), (0, 3));
        assert_eq!((taps.start[1], taps.count[1]), (1, 3));
        let row = RgbImage::from_fn(4, 1, |x, _| Rgb([[0, 70, 140, 210][x as usize]; 3]));
        let out = resize_bilinear(&row, 2, 1);
        // 0*3/7 + 70*3/7 + 140/7 = 50; 70/7 + 140*3/7 + 210*3/7 = 160.
        assert_eq!(out.get_pixel(0, 0).0, [50; 3]);
        assert_eq!(out.get_pixel(1, 0).0, [160; 3]);

        // Upscale 2 -> 4: plain linear interpolation, edges clamped.
        // Centres at 0.25, 0.75, 1.25, 1.75 in input pixels (-0.25, 0.25, 0.75, 1.25 from
        // pixel centres): 10, 10*0.75+90*0.25 = 30, 70, 90.
        let col = RgbImage::from_fn(1, 2, |_, y| Rgb([[10, 90][y as usize]; 3]));
        let out = resize_bilinear(&col, 1, 4);
        let got: Vec<u8> = (0..4).map(|y| out.get_pixel(0, y).0[0]).collect();
        assert_eq!(got, [10, 30, 70, 90]);

        // Rounding between passes: 3 -> 2 in each axis. Weights for 3 -> 2 (scale 1.5):
        // output 0 centre 0.75 reads 0..2 with 1-|x-0.25|/1.5 = 5/6, 1/2 -> 5/8, 3/8.
        let img = RgbImage::from_fn(3, 3, |x, y| Rgb([(x * 100 + y) as u8, 0, 255]));
        let out = resize_bilinear(&img, 2, 2);
        // Horizontal: row y: (y*5/8 + (100+y)*3/8) = 37.5 + y -> 38 (y=0), 39 (y=1), 40 (y=2)
        // (half rounds up). Vertical: 38*5/8 + 39*3/8 = 38.375 -> 38.
        assert_eq!(out.get_pixel(0, 0).0, [38, 0, 255]);
    }

    #[test]
    fn short_side_crop() {
        assert_eq!(short_side_size(500, 375, 256), (341, 256));
        assert_eq!(short_side_size(100, 300, 50), (50, 150));
        assert_eq!(half_round_even(5), 2);
        assert_eq!(half_round_even(7), 4);
        assert_eq!(half_round_even(8), 4);
        let p = Preprocess {
            size: (2, 2),
            mean: [0.0; 3],
            norm: [1.0; 3],
            order: ColorOrder::Rgb,
            resize: Resize::ShortCrop { short: 4 },
        };
        // A 4x6 image is not resized (short side already 4); the crop starts at row 2.
        let img = RgbImage::from_fn(4, 6, |x, y| Rgb([(10 * y + x) as u8, 0, 0]));
        let t = p.apply(&img).unwrap();
        assert_eq!(&t[..4], &[21.0, 22.0, 31.0, 32.0]);
        let too_small = Preprocess {
            resize: Resize::ShortCrop { short: 1 },
            ..p
        };
        assert!(too_small.apply(&img).is_err());
    }

    #[test]
    fn jpeg_decoding() {
        let dir = temp_dir("jpeg");
        let img = RgbImage::from_fn(24, 16, |x, y| Rgb([(x * 10) as u8, (y * 15) as u8, 128]));
        img.save(dir.join("colour.jpg")).unwrap();
        let decoded = load_rgb(&dir.join("colour.jpg")).unwrap();
        assert_eq!(decoded.dimensions(), (24, 16));
        // Lossy, but close to the original on a smooth image.
        let worst = img
            .as_raw()
            .iter()
            .zip(decoded.as_raw())
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        assert!(worst <= 12, "{worst}");

        // Grey JPEGs come back as RGB with equal channels.
        let grey = image::GrayImage::from_fn(8, 8, |x, y| image::Luma([(x * 20 + y) as u8]));
        grey.save(dir.join("grey.jpg")).unwrap();
        let decoded = load_rgb(&dir.join("grey.jpg")).unwrap();
        assert!(decoded
            .pixels()
            .all(|p| p.0[0] == p.0[1] && p.0[1] == p.0[2]));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn listing_order_and_lists() {
        let dir = temp_dir("list");
        let img = gradient(3, 3);
        for name in ["b.PNG", "a.jpg", "c.JPEG", "d.jpeg", "A.png"] {
            img.save_with_format(dir.join(name), image::ImageFormat::Png)
                .unwrap();
        }
        std::fs::write(dir.join("notes.txt"), "x").unwrap();
        std::fs::create_dir(dir.join("sub.png")).unwrap();
        let names = |v: &[PathBuf]| -> Vec<String> {
            v.iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect()
        };
        let all = collect_images(&ImageSource::Dir(dir.clone()), None).unwrap();
        assert_eq!(names(&all), ["A.png", "a.jpg", "b.PNG", "c.JPEG", "d.jpeg"]);
        let two = collect_images(&ImageSource::Dir(dir.clone()), Some(2)).unwrap();
        assert_eq!(names(&two), ["A.png", "a.jpg"]);

        let list = dir.join("list.txt");
        std::fs::write(&list, "# calibration\nc.JPEG\n\n  a.jpg  \n").unwrap();
        let listed = collect_images(&ImageSource::List(list), None).unwrap();
        assert_eq!(listed, [dir.join("c.JPEG"), dir.join("a.jpg")]);

        let empty = temp_dir("list-empty");
        assert!(collect_images(&ImageSource::Dir(empty.clone()), None).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::remove_dir_all(&empty).unwrap();
    }

    #[test]
    fn corrupt_files_skip_or_fail() {
        let dir = temp_dir("corrupt");
        gradient(4, 4).save(dir.join("good.png")).unwrap();
        std::fs::write(dir.join("bad.jpg"), b"this is not a jpeg").unwrap();
        let mut truncated = std::fs::read(dir.join("good.png")).unwrap();
        truncated.truncate(truncated.len() / 2);
        std::fs::write(dir.join("cut.png"), truncated).unwrap();
        let mut jpeg = Vec::new();
        gradient(16, 16)
            .write_to(
                &mut std::io::Cursor::new(&mut jpeg),
                image::ImageFormat::Jpeg,
            )
            .unwrap();
        std::fs::write(dir.join("half.jpg"), &jpeg[..jpeg.len() / 2]).unwrap();
        let paths = list_dir(&dir).unwrap();
        assert_eq!(paths.len(), 4);
        let p = Preprocess {
            size: (4, 4),
            ..Preprocess::mobilefacenet()
        };
        let loaded = load_all(&paths, &p, false).unwrap();
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].0, dir.join("good.png"));
        let err = load_all(&paths, &p, true).unwrap_err();
        assert!(format!("{err:#}").contains("bad.jpg"), "{err:#}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
