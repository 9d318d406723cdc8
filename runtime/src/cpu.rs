//! What CPUs this machine has: core type (MIDR part number), maximum frequency and L2 size
//! per logical CPU, read from sysfs and /proc/cpuinfo. Kernels are chosen per core type
//! (Cortex-A53 is in-order and wants differently scheduled loops than the A72), and tile
//! sizes from the L2 of the cluster a worker runs on.
//!
//! `EQ_CPU_KIND=a53|a72|generic` overrides detection (qemu-user reports one core type for all
//! CPUs, so tests force each variant this way).

use std::path::Path;

/// MIDR part numbers (ARM Ltd. implementer).
pub const PART_CORTEX_A53: u32 = 0xd03;
pub const PART_CORTEX_A72: u32 = 0xd08;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CoreKind {
    CortexA53,
    CortexA72,
    /// Any other core: generic kernels for its architecture.
    Other,
}

impl CoreKind {
    pub fn from_part(part: Option<u32>) -> CoreKind {
        match part {
            Some(PART_CORTEX_A53) => CoreKind::CortexA53,
            Some(PART_CORTEX_A72) => CoreKind::CortexA72,
            _ => CoreKind::Other,
        }
    }

    /// The `EQ_CPU_KIND` override, if set to a known value.
    pub fn from_env() -> Option<CoreKind> {
        match std::env::var("EQ_CPU_KIND")
            .ok()?
            .to_ascii_lowercase()
            .as_str()
        {
            "a53" | "cortex-a53" => Some(CoreKind::CortexA53),
            "a72" | "cortex-a72" => Some(CoreKind::CortexA72),
            "generic" | "other" => Some(CoreKind::Other),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            CoreKind::CortexA53 => "cortex-a53",
            CoreKind::CortexA72 => "cortex-a72",
            CoreKind::Other => "generic",
        }
    }
}

/// One logical CPU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuInfo {
    pub id: usize,
    /// MIDR part number (aarch64 only).
    pub part: Option<u32>,
    pub max_freq_khz: Option<u64>,
    pub l2_bytes: Option<usize>,
}

impl CpuInfo {
    pub fn kind(&self) -> CoreKind {
        CoreKind::from_env().unwrap_or(CoreKind::from_part(self.part))
    }
}

/// Parses a sysfs CPU list such as `0-3,5`.
pub fn parse_cpu_list(s: &str) -> Option<Vec<usize>> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                if b < a || b - a > 4096 {
                    return None;
                }
                out.extend(a..=b);
            }
            None => out.push(part.trim().parse().ok()?),
        }
    }
    Some(out)
}

/// Reads "CPU part" per processor from /proc/cpuinfo text.
pub fn parse_cpuinfo_parts(text: &str) -> Vec<(usize, u32)> {
    let mut out = Vec::new();
    let mut current: Option<usize> = None;
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        if k == "processor" {
            current = v.parse().ok();
        } else if k == "CPU part" {
            if let (Some(id), Some(p)) = (
                current,
                v.strip_prefix("0x")
                    .and_then(|h| u32::from_str_radix(h, 16).ok()),
            ) {
                out.push((id, p));
            }
        }
    }
    out
}

/// Parses cache sizes as sysfs writes them (`512K`, `1024K`, `1M`).
pub fn parse_cache_size(s: &str) -> Option<usize> {
    let s = s.trim();
    let (num, mul) = match s.chars().last()? {
        'K' | 'k' => (&s[..s.len() - 1], 1024),
        'M' | 'm' => (&s[..s.len() - 1], 1024 * 1024),
        _ => (s, 1),
    };
    num.trim().parse::<usize>().ok().map(|n| n * mul)
}

/// The part number of the CPU running this thread, from MIDR_EL1. Used when sysfs and
/// /proc/cpuinfo say nothing, as under qemu-user, which shows the host's /proc/cpuinfo.
/// Reading MIDR_EL1 at EL0 traps; only a Linux kernel that advertises `HWCAP_CPUID` emulates
/// it, so anything else gets None instead of SIGILL.
#[cfg(all(target_arch = "aarch64", target_os = "linux"))]
pub fn current_part() -> Option<u32> {
    if !hwcap_cpuid(&std::fs::read("/proc/self/auxv").ok()?) {
        return None;
    }
    let midr: u64;
    // SAFETY: reading MIDR_EL1 has no side effects, and the kernel said it emulates the read.
    unsafe { std::arch::asm!("mrs {}, midr_el1", out(reg) midr) };
    Some(((midr >> 4) & 0xfff) as u32)
}

#[cfg(not(all(target_arch = "aarch64", target_os = "linux")))]
pub fn current_part() -> Option<u32> {
    None
}

/// Whether an auxiliary vector (`/proc/self/auxv`: native-endian u64 key/value pairs) has
/// `AT_HWCAP` with the `HWCAP_CPUID` bit (aarch64 Linux: MIDR_EL1 reads are emulated).
#[cfg_attr(
    not(all(target_arch = "aarch64", target_os = "linux")),
    allow(dead_code)
)]
fn hwcap_cpuid(auxv: &[u8]) -> bool {
    const AT_HWCAP: u64 = 16;
    const HWCAP_CPUID: u64 = 1 << 11;
    let word = |c: &[u8]| u64::from_ne_bytes(c.try_into().unwrap_or([0; 8]));
    auxv.chunks_exact(16)
        .map(|pair| (word(&pair[..8]), word(&pair[8..])))
        .take_while(|&(key, _)| key != 0)
        .any(|(key, value)| key == AT_HWCAP && value & HWCAP_CPUID != 0)
}

fn read(path: impl AsRef<Path>) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// All CPUs of this machine, from sysfs (falls back to the available parallelism).
pub fn detect() -> Vec<CpuInfo> {
    let ids = read("/sys/devices/system/cpu/possible")
        .and_then(|s| parse_cpu_list(&s))
        .unwrap_or_else(|| {
            (0..std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1))
                .collect()
        });
    let parts = read("/proc/cpuinfo")
        .map(|t| parse_cpuinfo_parts(&t))
        .unwrap_or_default();
    ids.into_iter()
        .map(|id| {
            let base = format!("/sys/devices/system/cpu/cpu{id}");
            let midr = read(format!("{base}/regs/identification/midr_el1"))
                .and_then(|s| u64::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok())
                .map(|m| ((m >> 4) & 0xfff) as u32);
            let part = midr
                .or_else(|| parts.iter().find(|(p, _)| *p == id).map(|(_, v)| *v))
                .or_else(current_part);
            let max_freq_khz = read(format!("{base}/cpufreq/cpuinfo_max_freq"))
                .and_then(|s| s.trim().parse().ok());
            let l2_bytes = (0..4).find_map(|i| {
                let idx = format!("{base}/cache/index{i}");
                (read(format!("{idx}/level"))?.trim() == "2")
                    .then(|| read(format!("{idx}/size")).and_then(|s| parse_cache_size(&s)))?
            });
            CpuInfo {
                id,
                part,
                max_freq_khz,
                l2_bytes,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hwcap_cpuid_reads_the_auxiliary_vector() {
        let auxv = |pairs: &[(u64, u64)]| -> Vec<u8> {
            pairs
                .iter()
                .flat_map(|&(k, v)| [k.to_ne_bytes(), v.to_ne_bytes()].concat())
                .collect()
        };
        assert!(hwcap_cpuid(&auxv(&[
            (6, 4096),
            (16, 1 << 11 | 0xff),
            (0, 0)
        ])));
        assert!(!hwcap_cpuid(&auxv(&[(6, 4096), (16, 0xff), (0, 0)])));
        // After AT_NULL nothing counts; a truncated vector is no vector.
        assert!(!hwcap_cpuid(&auxv(&[(0, 0), (16, 1 << 11)])));
        assert!(!hwcap_cpuid(&[1, 2, 3]));
    }

    #[test]
    fn parses_sysfs_and_cpuinfo_formats() {
        assert_eq!(parse_cpu_list("0-3,5\n"), Some(vec![0, 1, 2, 3, 5]));
        assert_eq!(parse_cpu_list("0"), Some(vec![0]));
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cache_size("512K\n"), Some(512 * 1024));
        assert_eq!(parse_cache_size("1M"), Some(1 << 20));
        let text = "processor\t: 0\nCPU part\t: 0xd03\n\nprocessor\t: 4\nCPU part\t: 0xd08\n";
        assert_eq!(parse_cpuinfo_parts(text), vec![(0, 0xd03), (4, 0xd08)]);
        assert_eq!(CoreKind::from_part(Some(0xd03)), CoreKind::CortexA53);
        assert_eq!(CoreKind::from_part(None), CoreKind::Other);
    }

    #[test]
    fn detects_at_least_one_cpu() {
        let cpus = detect();
        assert!(!cpus.is_empty());
        if cfg!(target_arch = "aarch64") {
            assert!(cpus.iter().all(|c| c.part.is_some()), "{cpus:?}");
        }
    }
}
