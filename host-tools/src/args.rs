//! Command-line pieces shared by the image tools: preprocessing flags and image lists.

use crate::dataset::{self, ColorOrder, ImageSource, Preprocess, Resize};
use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ResizeMode {
    /// Scale each side to --size (aspect ratio not kept).
    Stretch,
    /// Short side to --short, then centre crop to --size.
    ShortCrop,
}

/// `--preset` gives every value; the other flags override it. Without a preset, `--size` is
/// required; mean 0, norm 1, RGB and stretch are the defaults.
#[derive(Args, Clone, Debug, Default)]
pub struct PrepArgs {
    /// Preprocessing of a known model: squeezenet, mobilenet_v2 or mobilefacenet.
    #[arg(long)]
    pub preset: Option<String>,
    /// Model input size W,H.
    #[arg(long, value_name = "W,H")]
    pub size: Option<String>,
    /// Per-channel mean (output channel order): value = (pixel - mean) * norm.
    #[arg(long, value_name = "A,B,C", allow_hyphen_values = true)]
    pub mean: Option<String>,
    /// Per-channel factor (output channel order).
    #[arg(long, value_name = "A,B,C", allow_hyphen_values = true)]
    pub norm: Option<String>,
    /// Feed channels as B, G, R.
    #[arg(long, conflicts_with = "rgb")]
    pub bgr: bool,
    /// Feed channels as R, G, B.
    #[arg(long)]
    pub rgb: bool,
    /// How the image is brought to --size.
    #[arg(long, value_enum)]
    pub resize: Option<ResizeMode>,
    /// Short side for --resize short-crop.
    #[arg(long)]
    pub short: Option<u32>,
}

fn numbers<const N: usize>(flag: &str, text: &str) -> Result<[f32; N]> {
    let v: Vec<f32> = text
        .split(',')
        .map(|t| t.trim().parse::<f32>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| anyhow::anyhow!("--{flag} {text}: expected {N} comma-separated numbers"))?;
    match v.try_into() {
        Ok(a) => Ok(a),
        Err(_) => bail!("--{flag} {text}: expected {N} comma-separated numbers"),
    }
}

impl PrepArgs {
    pub fn preprocess(&self) -> Result<Preprocess> {
        let mut p = match &self.preset {
            Some(name) => Preprocess::preset(name).ok_or_else(|| {
                anyhow::anyhow!(
                    "unknown --preset `{name}` (known: squeezenet, mobilenet_v2, mobilefacenet)"
                )
            })?,
            None => {
                if self.size.is_none() {
                    bail!("give --preset or --size W,H (with --mean, --norm, --bgr/--rgb)");
                }
                Preprocess {
                    size: (0, 0),
                    mean: [0.0; 3],
                    norm: [1.0; 3],
                    order: ColorOrder::Rgb,
                    resize: Resize::Stretch,
                }
            }
        };
        if let Some(s) = &self.size {
            let [w, h] = numbers::<2>("size", s)?;
            if w < 1.0 || h < 1.0 || w.fract() != 0.0 || h.fract() != 0.0 {
                bail!("--size {s}: expected two positive integers W,H");
            }
            p.size = (w as u32, h as u32);
        }
        if let Some(m) = &self.mean {
            p.mean = numbers("mean", m)?;
        }
        if let Some(n) = &self.norm {
            p.norm = numbers("norm", n)?;
        }
        if self.bgr {
            p.order = ColorOrder::Bgr;
        }
        if self.rgb {
            p.order = ColorOrder::Rgb;
        }
        match (self.resize, self.short) {
            (Some(ResizeMode::ShortCrop), Some(short)) => p.resize = Resize::ShortCrop { short },
            (Some(ResizeMode::ShortCrop), None) => bail!("--resize short-crop needs --short S"),
            (Some(ResizeMode::Stretch), Some(_)) | (None, Some(_)) => {
                bail!("--short only applies to --resize short-crop")
            }
            (Some(ResizeMode::Stretch), None) => p.resize = Resize::Stretch,
            (None, None) => {}
        }
        Ok(p)
    }
}

/// Where the images come from.
#[derive(Args, Clone, Debug, Default)]
pub struct ImageArgs {
    /// Folder of images (every .jpg/.jpeg/.png directly inside, sorted by name).
    #[arg(long, conflicts_with = "list")]
    pub images: Option<PathBuf>,
    /// Text file with one image path per line (relative to the list's folder).
    #[arg(long)]
    pub list: Option<PathBuf>,
    /// Use only the first N images.
    #[arg(long)]
    pub count: Option<usize>,
    /// Fail on an unreadable image instead of skipping it with a warning.
    #[arg(long)]
    pub strict: bool,
}

impl ImageArgs {
    pub fn source(&self) -> Result<ImageSource> {
        match (&self.images, &self.list) {
            (Some(d), None) => Ok(ImageSource::Dir(d.clone())),
            (None, Some(f)) => Ok(ImageSource::List(f.clone())),
            _ => bail!("give --images DIR or --list FILE"),
        }
    }

    pub fn paths(&self) -> Result<Vec<PathBuf>> {
        if self.count == Some(0) {
            bail!("--count must be at least 1");
        }
        dataset::collect_images(&self.source()?, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preset_and_overrides() {
        let a = PrepArgs {
            preset: Some("squeezenet".into()),
            ..Default::default()
        };
        assert_eq!(a.preprocess().unwrap(), Preprocess::squeezenet());
        let a = PrepArgs {
            preset: Some("squeezenet".into()),
            rgb: true,
            size: Some("224,200".into()),
            mean: Some("-1,2.5,3".into()),
            resize: Some(ResizeMode::ShortCrop),
            short: Some(256),
            ..Default::default()
        };
        let p = a.preprocess().unwrap();
        assert_eq!(p.size, (224, 200));
        assert_eq!(p.mean, [-1.0, 2.5, 3.0]);
        assert_eq!(p.order, ColorOrder::Rgb);
        assert_eq!(p.resize, Resize::ShortCrop { short: 256 });
        let plain = PrepArgs {
            size: Some("8,4".into()),
            norm: Some("0.5,0.5,0.5".into()),
            bgr: true,
            ..Default::default()
        };
        let p = plain.preprocess().unwrap();
        assert_eq!(
            (p.size, p.order, p.norm),
            ((8, 4), ColorOrder::Bgr, [0.5; 3])
        );
        for bad in [
            PrepArgs::default(),
            PrepArgs {
                preset: Some("resnet".into()),
                ..Default::default()
            },
            PrepArgs {
                size: Some("8".into()),
                ..Default::default()
            },
            PrepArgs {
                size: Some("8,4".into()),
                mean: Some("1,2".into()),
                ..Default::default()
            },
            PrepArgs {
                size: Some("8,4".into()),
                resize: Some(ResizeMode::ShortCrop),
                ..Default::default()
            },
        ] {
            assert!(bad.preprocess().is_err(), "{bad:?}");
        }
    }
}
