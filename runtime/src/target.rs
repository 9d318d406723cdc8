//! The board a model runs on: its CPU clusters (which CPUs, what core, frequency, L2),
//! detected on this machine from sysfs, and the user's choice of cluster
//! (`big | little | all | cpus=0,1`) resolved to a CPU list for pinning.
//!
//! Board files (`targets/*.toml`) describing a machine other than this one are read by the
//! benchmark crate (`eq_bench::board::load`), not here: the runtime takes no parser
//! dependencies.

use crate::cpu::{self, CoreKind, CpuInfo};
use std::fmt;
use std::str::FromStr;

/// One group of identical cores.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cluster {
    /// "little", "big", "all" (single-cluster machines) or "mid…" between the two.
    pub name: String,
    pub cpus: Vec<usize>,
    pub core: CoreKind,
    pub freq_mhz: Option<u64>,
    pub l2_kib: Option<usize>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub board: String,
    /// Ordered as in the file, or slowest first when detected.
    pub clusters: Vec<Cluster>,
    /// Name of the cluster used when the user chooses none.
    pub default_cluster: String,
}

impl Target {
    /// This machine's clusters, from `cpu::detect()`.
    pub fn detect() -> Target {
        Target::from_cpus(&cpu::detect())
    }

    /// Groups CPUs into clusters by (part number, maximum frequency), slowest first: the
    /// slowest is "little", the fastest "big", any between "mid" (or "mid1", "mid2", …). One
    /// group, or CPUs without part numbers (x86), make a single cluster "all".
    pub fn from_cpus(cpus: &[CpuInfo]) -> Target {
        let board = format!("detected-{}", std::env::consts::ARCH);
        if cpus.is_empty() {
            return Target {
                board,
                clusters: vec![Cluster {
                    name: "all".into(),
                    cpus: vec![0],
                    core: CoreKind::Other,
                    freq_mhz: None,
                    l2_kib: None,
                }],
                default_cluster: "all".into(),
            };
        }
        let cluster_of = |group: &[&CpuInfo], name: &str| Cluster {
            name: name.to_string(),
            cpus: group.iter().map(|c| c.id).collect(),
            core: group[0].kind(),
            freq_mhz: group
                .iter()
                .filter_map(|c| c.max_freq_khz)
                .max()
                .map(|k| k / 1000),
            l2_kib: group[0].l2_bytes.map(|b| b / 1024),
        };
        let all: Vec<&CpuInfo> = cpus.iter().collect();
        let mut groups: Vec<Vec<&CpuInfo>> = Vec::new();
        if cpus.iter().any(|c| c.part.is_some()) {
            for c in cpus {
                match groups
                    .iter_mut()
                    .find(|g| (g[0].part, g[0].max_freq_khz) == (c.part, c.max_freq_khz))
                {
                    Some(g) => g.push(c),
                    None => groups.push(vec![c]),
                }
            }
            groups.sort_by_key(|g| (g[0].max_freq_khz, g[0].part));
        }
        if groups.len() <= 1 {
            return Target {
                board,
                clusters: vec![cluster_of(&all, "all")],
                default_cluster: "all".into(),
            };
        }
        let n = groups.len();
        let clusters = groups
            .iter()
            .enumerate()
            .map(|(i, g)| {
                let name = match i {
                    0 => "little".to_string(),
                    i if i == n - 1 => "big".to_string(),
                    _ if n == 3 => "mid".to_string(),
                    i => format!("mid{i}"),
                };
                cluster_of(g, &name)
            })
            .collect();
        Target {
            board,
            clusters,
            default_cluster: "big".into(),
        }
    }

    pub fn cluster(&self, name: &str) -> Option<&Cluster> {
        self.clusters.iter().find(|c| c.name == name)
    }

    /// Every CPU of the target, ascending.
    pub fn all_cpus(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self
            .clusters
            .iter()
            .flat_map(|c| c.cpus.iter().copied())
            .collect();
        v.sort_unstable();
        v
    }

    /// The distinct core kinds of `cpus`, in cluster order (CPUs the target lacks are skipped).
    pub fn cores_of(&self, cpus: &[usize]) -> Vec<CoreKind> {
        let mut kinds = Vec::new();
        for c in &self.clusters {
            if c.cpus.iter().any(|id| cpus.contains(id)) && !kinds.contains(&c.core) {
                kinds.push(c.core);
            }
        }
        kinds
    }
}

/// Which CPUs to run on, as a user writes it: `big | little | all | cpus=0,1` (`cpus=` also
/// takes ranges: `cpus=0-3`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CpuSelection {
    Big,
    Little,
    All,
    Cpus(Vec<usize>),
}

impl FromStr for CpuSelection {
    type Err = String;

    fn from_str(s: &str) -> Result<CpuSelection, String> {
        match s.trim() {
            "big" => Ok(CpuSelection::Big),
            "little" => Ok(CpuSelection::Little),
            "all" => Ok(CpuSelection::All),
            other => {
                let Some(list) = other.strip_prefix("cpus=") else {
                    return Err(format!(
                        "unknown cpu selection `{other}`: expected big, little, all or cpus=0,1"
                    ));
                };
                let cpus = cpu::parse_cpu_list(list)
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| {
                        format!("bad cpu list `{list}`: expected numbers like cpus=0,1 or cpus=0-3")
                    })?;
                for (i, c) in cpus.iter().enumerate() {
                    if cpus[..i].contains(c) {
                        return Err(format!("cpu {c} is listed twice in `{list}`"));
                    }
                }
                Ok(CpuSelection::Cpus(cpus))
            }
        }
    }
}

impl fmt::Display for CpuSelection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CpuSelection::Big => f.write_str("big"),
            CpuSelection::Little => f.write_str("little"),
            CpuSelection::All => f.write_str("all"),
            CpuSelection::Cpus(v) => {
                let list: Vec<String> = v.iter().map(|c| c.to_string()).collect();
                write!(f, "cpus={}", list.join(","))
            }
        }
    }
}

impl CpuSelection {
    /// The CPUs this selection means on `target`. `big` and `little` on a single-cluster
    /// target are all its CPUs; listed CPUs must exist on the target.
    pub fn resolve(&self, target: &Target) -> Result<Vec<usize>, String> {
        let named = |name: &str| match (target.cluster(name), target.clusters.as_slice()) {
            (Some(c), _) => Ok(c.cpus.clone()),
            (None, [only]) => Ok(only.cpus.clone()),
            (None, _) => {
                let names: Vec<&str> = target.clusters.iter().map(|c| c.name.as_str()).collect();
                Err(format!(
                    "target `{}` has no `{name}` cluster (it has: {})",
                    target.board,
                    names.join(", ")
                ))
            }
        };
        match self {
            CpuSelection::Big => named("big"),
            CpuSelection::Little => named("little"),
            CpuSelection::All => Ok(target.all_cpus()),
            CpuSelection::Cpus(v) => {
                let all = target.all_cpus();
                if let Some(c) = v.iter().find(|c| !all.contains(c)) {
                    let list: Vec<String> = all.iter().map(|c| c.to_string()).collect();
                    return Err(format!(
                        "cpu {c} is not on target `{}` (cpus {})",
                        target.board,
                        list.join(",")
                    ));
                }
                Ok(v.clone())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(name: &str, cpus: &[usize], core: CoreKind) -> Cluster {
        Cluster {
            name: name.into(),
            cpus: cpus.to_vec(),
            core,
            freq_mhz: None,
            l2_kib: None,
        }
    }

    /// The clusters of `targets/rk3399.toml` (read from the file by `eq_bench::board`).
    fn rk3399() -> Target {
        Target {
            board: "rk3399".into(),
            clusters: vec![
                cluster("little", &[0, 1, 2, 3], CoreKind::CortexA53),
                cluster("big", &[4, 5], CoreKind::CortexA72),
            ],
            default_cluster: "big".into(),
        }
    }

    fn cpu(id: usize, part: Option<u32>, khz: u64) -> CpuInfo {
        CpuInfo {
            id,
            part,
            max_freq_khz: Some(khz),
            l2_bytes: Some(if khz > 1_500_000 { 1 << 20 } else { 512 << 10 }),
        }
    }

    #[test]
    fn detection_groups_rk3399_like_cpus() {
        let mut cpus: Vec<CpuInfo> = (0..4)
            .map(|i| cpu(i, Some(cpu::PART_CORTEX_A53), 1_416_000))
            .collect();
        cpus.extend((4..6).map(|i| cpu(i, Some(cpu::PART_CORTEX_A72), 1_800_000)));
        // Listing order must not matter.
        cpus.reverse();
        let t = Target::from_cpus(&cpus);
        assert_eq!(t.clusters.len(), 2);
        let (little, big) = (&t.clusters[0], &t.clusters[1]);
        assert_eq!(little.name, "little");
        assert_eq!(big.name, "big");
        let sorted = |v: &[usize]| {
            let mut v = v.to_vec();
            v.sort_unstable();
            v
        };
        assert_eq!(sorted(&little.cpus), vec![0, 1, 2, 3]);
        assert_eq!(sorted(&big.cpus), vec![4, 5]);
        assert_eq!((little.freq_mhz, big.freq_mhz), (Some(1416), Some(1800)));
        assert_eq!((little.l2_kib, big.l2_kib), (Some(512), Some(1024)));
        if std::env::var("EQ_CPU_KIND").is_err() {
            assert_eq!(
                (little.core, big.core),
                (CoreKind::CortexA53, CoreKind::CortexA72)
            );
        }
        assert_eq!(t.default_cluster, "big");
        assert_eq!(sorted(&CpuSelection::Big.resolve(&t).unwrap()), vec![4, 5]);
        assert_eq!(t.all_cpus(), vec![0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn detection_single_cluster_and_x86() {
        // Same part and frequency: one cluster.
        let same: Vec<CpuInfo> = (0..4).map(|i| cpu(i, Some(0xd03), 1_200_000)).collect();
        let t = Target::from_cpus(&same);
        assert_eq!(t.clusters.len(), 1);
        assert_eq!(t.clusters[0].name, "all");
        // No part numbers (x86): one cluster even if frequencies differ.
        let x86 = vec![cpu(0, None, 3_000_000), cpu(1, None, 4_000_000)];
        let t = Target::from_cpus(&x86);
        assert_eq!(t.clusters.len(), 1);
        assert_eq!(t.clusters[0].cpus, vec![0, 1]);
        assert_eq!(t.clusters[0].freq_mhz, Some(4000));
        // Same part, three frequencies: little, mid, big.
        let tri = vec![
            cpu(0, Some(0xd03), 1_000_000),
            cpu(1, Some(0xd03), 2_000_000),
            cpu(2, Some(0xd03), 1_500_000),
        ];
        let names: Vec<String> = Target::from_cpus(&tri)
            .clusters
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(names, ["little", "mid", "big"]);
        // Detecting this machine works and covers at least one CPU.
        assert!(!Target::detect().all_cpus().is_empty());
    }

    #[test]
    fn parses_selections() {
        assert_eq!("big".parse(), Ok(CpuSelection::Big));
        assert_eq!("little".parse(), Ok(CpuSelection::Little));
        assert_eq!("all".parse(), Ok(CpuSelection::All));
        assert_eq!("cpus=4,5".parse(), Ok(CpuSelection::Cpus(vec![4, 5])));
        assert_eq!("cpus=0-2".parse(), Ok(CpuSelection::Cpus(vec![0, 1, 2])));
        for bad in ["", "bigg", "cpus=", "cpus=a", "cpus=1,1", "cpus=3-1", "4,5"] {
            assert!(bad.parse::<CpuSelection>().is_err(), "{bad}");
        }
        let e = "fast".parse::<CpuSelection>().unwrap_err();
        assert!(e.contains("big, little, all or cpus=0,1"), "{e}");
        for s in ["big", "little", "all", "cpus=1,3"] {
            assert_eq!(s.parse::<CpuSelection>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn resolves_selections_against_targets() {
        let rk = rk3399();
        assert_eq!(CpuSelection::Big.resolve(&rk), Ok(vec![4, 5]));
        assert_eq!(CpuSelection::Little.resolve(&rk), Ok(vec![0, 1, 2, 3]));
        assert_eq!(CpuSelection::All.resolve(&rk), Ok(vec![0, 1, 2, 3, 4, 5]));
        assert_eq!(CpuSelection::Cpus(vec![5, 0]).resolve(&rk), Ok(vec![5, 0]));
        let e = CpuSelection::Cpus(vec![6]).resolve(&rk).unwrap_err();
        assert!(e.contains("cpu 6 is not on target `rk3399`"), "{e}");
        assert_eq!(
            rk.cores_of(&[0, 4]),
            vec![CoreKind::CortexA53, CoreKind::CortexA72]
        );
        assert_eq!(rk.cores_of(&[5]), vec![CoreKind::CortexA72]);

        // One cluster (`targets/host.toml`): big and little are all of it.
        let host = Target {
            board: "host".into(),
            clusters: vec![cluster("all", &[0, 1], CoreKind::Other)],
            default_cluster: "all".into(),
        };
        assert_eq!(CpuSelection::Big.resolve(&host), Ok(vec![0, 1]));
        assert_eq!(CpuSelection::Little.resolve(&host), Ok(vec![0, 1]));

        // Two clusters, neither called big: an error naming what exists.
        let odd = Target {
            board: "o".into(),
            clusters: vec![
                cluster("a", &[0], CoreKind::Other),
                cluster("b", &[1], CoreKind::Other),
            ],
            default_cluster: "a".into(),
        };
        let e = CpuSelection::Big.resolve(&odd).unwrap_err();
        assert!(e.contains("no `big` cluster (it has: a, b)"), "{e}");
    }
}
