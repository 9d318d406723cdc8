//! The board a model runs on: its CPU clusters (which CPUs, what core, frequency, L2), either
//! detected on this machine or read from a `targets/*.toml` file, and the user's choice of
//! cluster (`big | little | all | cpus=0,1`) resolved to a CPU list for pinning.
//!
//! The file format is a small TOML subset, documented at the top of `targets/rk3399.toml`;
//! it is parsed here by hand because the runtime takes no parser dependencies.

use crate::cpu::{self, CoreKind, CpuInfo};
use std::fmt;
use std::path::Path;
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

/// A malformed target file; `line` is 1-based, 0 when the problem is not on one line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetError {
    pub file: String,
    pub line: usize,
    pub msg: String,
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: {}", self.file, self.line, self.msg)
        } else {
            write!(f, "{}: {}", self.file, self.msg)
        }
    }
}

impl std::error::Error for TargetError {}

/// Core names accepted in target files (the names `CoreKind::name` prints).
fn core_from_name(name: &str) -> Option<CoreKind> {
    [CoreKind::CortexA53, CoreKind::CortexA72, CoreKind::Other]
        .into_iter()
        .find(|k| k.name() == name)
}

/// A value of the TOML subset.
#[derive(Debug)]
enum Value {
    Str(String),
    Int(u64),
    IntArray(Vec<u64>),
}

impl Value {
    fn describe(&self) -> &'static str {
        match self {
            Value::Str(_) => "a string",
            Value::Int(_) => "an integer",
            Value::IntArray(_) => "an array",
        }
    }
}

fn parse_int(s: &str) -> Option<u64> {
    let s = s.trim();
    let ok = !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_digit() || b == b'_')
        && !s.starts_with('_')
        && !s.ends_with('_');
    if !ok {
        return None;
    }
    s.replace('_', "").parse().ok()
}

fn parse_value(s: &str) -> Result<Value, String> {
    if let Some(rest) = s.strip_prefix('"') {
        let Some(inner) = rest.strip_suffix('"') else {
            return Err(format!("unterminated string {s}"));
        };
        if inner.contains('"') || inner.contains('\\') {
            return Err(format!(
                "strings may not contain quotes or backslashes: {s}"
            ));
        }
        return Ok(Value::Str(inner.to_string()));
    }
    if let Some(rest) = s.strip_prefix('[') {
        let Some(inner) = rest.strip_suffix(']') else {
            return Err("arrays must open and close on one line: `[0, 1]`".into());
        };
        let mut parts: Vec<&str> = inner.split(',').map(str::trim).collect();
        // TOML allows one trailing comma; `[]` is an empty array.
        if parts.last() == Some(&"") {
            parts.pop();
        }
        let mut items = Vec::with_capacity(parts.len());
        for item in parts {
            items.push(parse_int(item).ok_or_else(|| {
                format!("array items must be non-negative integers, got `{item}`")
            })?);
        }
        return Ok(Value::IntArray(items));
    }
    parse_int(s).map(Value::Int).ok_or_else(|| {
        format!("cannot read value `{s}`: expected \"string\", an integer or [0, 1]")
    })
}

/// Removes a `#` comment that is not inside a string.
fn strip_comment(line: &str) -> &str {
    let mut in_string = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => in_string = !in_string,
            '#' if !in_string => return &line[..i],
            _ => {}
        }
    }
    line
}

/// Keys of one table as read, each with its line, for checks once the table is complete.
#[derive(Default)]
struct Table {
    line: usize,
    entries: Vec<(String, Value, usize)>,
}

impl Table {
    fn take(&mut self, key: &str) -> Option<(Value, usize)> {
        let i = self.entries.iter().position(|(k, ..)| k == key)?;
        let (_, v, line) = self.entries.remove(i);
        Some((v, line))
    }
}

impl Target {
    /// Reads a target file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Target, TargetError> {
        let path = path.as_ref();
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| TargetError {
            file: file.clone(),
            line: 0,
            msg: e.to_string(),
        })?;
        Target::parse(&text, &file)
    }

    /// Parses target file text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Target, TargetError> {
        let err = |line: usize, msg: String| TargetError {
            file: file.to_string(),
            line,
            msg,
        };
        let mut top = Table::default();
        let mut clusters: Vec<Table> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = strip_comment(raw).trim();
            if line.is_empty() {
                continue;
            }
            if line.starts_with('[') {
                if line == "[[cluster]]" {
                    clusters.push(Table {
                        line: line_no,
                        entries: Vec::new(),
                    });
                    continue;
                }
                return Err(err(
                    line_no,
                    format!("unsupported table `{line}`: only [[cluster]] is allowed"),
                ));
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(err(
                    line_no,
                    format!("expected `key = value`, got `{line}`"),
                ));
            };
            let key = key.trim();
            if key.is_empty()
                || !key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(err(line_no, format!("invalid key `{key}`")));
            }
            let value = parse_value(value.trim()).map_err(|m| err(line_no, m))?;
            let (table, allowed): (&mut Table, &[&str]) = match clusters.last_mut() {
                None => (&mut top, &["board", "default_cluster"]),
                Some(c) => (c, &["name", "cpus", "core", "freq_mhz", "l2_kib"]),
            };
            if !allowed.contains(&key) {
                let place = if table.line == 0 {
                    "at the top level"
                } else {
                    "in [[cluster]]"
                };
                return Err(err(
                    line_no,
                    format!(
                        "unknown key `{key}` {place} (expected one of: {})",
                        allowed.join(", ")
                    ),
                ));
            }
            if let Some((_, _, first)) = table.entries.iter().find(|(k, ..)| k == key) {
                return Err(err(
                    line_no,
                    format!("`{key}` is given twice (first on line {first})"),
                ));
            }
            table.entries.push((key.to_string(), value, line_no));
        }

        let string = |t: &mut Table, key: &str| -> Result<Option<(String, usize)>, TargetError> {
            match t.take(key) {
                None => Ok(None),
                Some((Value::Str(s), line)) if !s.is_empty() => Ok(Some((s, line))),
                Some((Value::Str(_), line)) => Err(err(line, format!("`{key}` is empty"))),
                Some((v, line)) => Err(err(
                    line,
                    format!("`{key}` must be a string, got {}", v.describe()),
                )),
            }
        };
        let int = |t: &mut Table, key: &str| -> Result<Option<u64>, TargetError> {
            match t.take(key) {
                None => Ok(None),
                Some((Value::Int(n), _)) => Ok(Some(n)),
                Some((v, line)) => Err(err(
                    line,
                    format!("`{key}` must be an integer, got {}", v.describe()),
                )),
            }
        };

        let board = string(&mut top, "board")?
            .ok_or_else(|| err(0, "missing top-level `board = \"…\"`".into()))?
            .0;
        let default_cluster = string(&mut top, "default_cluster")?;
        if clusters.is_empty() {
            return Err(err(0, "no [[cluster]] tables".into()));
        }

        let mut out: Vec<Cluster> = Vec::new();
        for mut t in clusters {
            let header = t.line;
            let missing = |key: &str| err(header, format!("[[cluster]] without `{key}`"));
            let (name, name_line) = string(&mut t, "name")?.ok_or_else(|| missing("name"))?;
            if out.iter().any(|c| c.name == name) {
                return Err(err(name_line, format!("cluster `{name}` is defined twice")));
            }
            let (cpus, cpus_line) = match t.take("cpus") {
                None => return Err(missing("cpus")),
                Some((Value::IntArray(v), line)) => (v, line),
                Some((v, line)) => {
                    return Err(err(
                        line,
                        format!("`cpus` must be an array like [0, 1], got {}", v.describe()),
                    ))
                }
            };
            if cpus.is_empty() {
                return Err(err(cpus_line, "`cpus` is empty".into()));
            }
            let mut ids = Vec::with_capacity(cpus.len());
            for cpu in cpus {
                let id = usize::try_from(cpu)
                    .ok()
                    .filter(|&id| id < 4096)
                    .ok_or_else(|| err(cpus_line, format!("cpu {cpu} is out of range")))?;
                if ids.contains(&id) || out.iter().any(|c| c.cpus.contains(&id)) {
                    return Err(err(cpus_line, format!("cpu {id} is listed twice")));
                }
                ids.push(id);
            }
            let (core_name, core_line) = string(&mut t, "core")?.ok_or_else(|| missing("core"))?;
            let core = core_from_name(&core_name).ok_or_else(|| {
                err(
                    core_line,
                    format!(
                        "unknown core `{core_name}` (expected cortex-a53, cortex-a72 or generic)"
                    ),
                )
            })?;
            let freq_mhz = int(&mut t, "freq_mhz")?;
            let l2_kib = int(&mut t, "l2_kib")?.map(|n| n as usize);
            out.push(Cluster {
                name,
                cpus: ids,
                core,
                freq_mhz,
                l2_kib,
            });
        }

        let default_cluster = match default_cluster {
            Some((name, line)) => {
                if !out.iter().any(|c| c.name == name) {
                    return Err(err(
                        line,
                        format!("default_cluster `{name}` is not a cluster of this file"),
                    ));
                }
                name
            }
            None if out.iter().any(|c| c.name == "big") => "big".to_string(),
            None => out[0].name.clone(),
        };
        Ok(Target {
            board,
            clusters: out,
            default_cluster,
        })
    }

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

    const RK3399: &str = include_str!("../../targets/rk3399.toml");
    const HOST: &str = include_str!("../../targets/host.toml");

    fn parse_err(text: &str) -> TargetError {
        Target::parse(text, "t.toml").unwrap_err()
    }

    #[test]
    fn reads_the_rk3399_file() {
        let t = Target::parse(RK3399, "rk3399.toml").unwrap();
        assert_eq!(t.board, "rk3399");
        assert_eq!(t.default_cluster, "big");
        assert_eq!(
            t.clusters,
            vec![
                Cluster {
                    name: "little".into(),
                    cpus: vec![0, 1, 2, 3],
                    core: CoreKind::CortexA53,
                    freq_mhz: Some(1500),
                    l2_kib: Some(512),
                },
                Cluster {
                    name: "big".into(),
                    cpus: vec![4, 5],
                    core: CoreKind::CortexA72,
                    freq_mhz: Some(1800),
                    l2_kib: Some(1024),
                },
            ]
        );
        let h = Target::parse(HOST, "host.toml").unwrap();
        assert_eq!(h.board, "host");
        assert_eq!(h.clusters.len(), 1);
        assert_eq!(h.clusters[0].core, CoreKind::Other);
        assert_eq!(h.clusters[0].freq_mhz, None);
    }

    #[test]
    fn reads_the_files_from_disk() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../targets/");
        assert_eq!(
            Target::from_file(format!("{dir}rk3399.toml")).unwrap(),
            Target::parse(RK3399, "x").unwrap()
        );
        let e = Target::from_file(format!("{dir}nope.toml")).unwrap_err();
        assert!(e.to_string().contains("nope.toml"), "{e}");
    }

    #[test]
    fn accepts_the_subset_details() {
        let t = Target::parse(
            "board = \"b#1\" # comment\n\n[[cluster]]\nname=\"x\"\ncpus = [ 0 , 1, ]\n\
             core = \"generic\"\nfreq_mhz = 1_416\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(t.board, "b#1");
        assert_eq!(t.clusters[0].cpus, vec![0, 1]);
        assert_eq!(t.clusters[0].freq_mhz, Some(1416));
        assert_eq!(t.default_cluster, "x", "no big cluster: the first one");
    }

    #[test]
    fn errors_name_file_and_line() {
        let cluster = "[[cluster]]\nname = \"big\"\ncpus = [0]\ncore = \"generic\"\n";
        let cases: Vec<(String, usize, &str)> = vec![
            (
                format!("board = \"b\"\n{cluster}speed = 3\n"),
                6,
                "unknown key `speed`",
            ),
            (
                "board = \"b\"\n[target]\n".into(),
                2,
                "unsupported table `[target]`",
            ),
            (
                "board = \"b\"\nboard = \"c\"\n".into(),
                2,
                "given twice (first on line 1)",
            ),
            ("board = b\n".into(), 1, "cannot read value `b`"),
            ("board = \"b\n".into(), 1, "unterminated string"),
            ("board = 3\n".into(), 1, "`board` must be a string"),
            ("junk\n".into(), 1, "expected `key = value`"),
            (
                format!("board=\"b\"\n{}", cluster.replace("[0]", "[0,\n")),
                4,
                "one line",
            ),
            (
                format!("board=\"b\"\n{}", cluster.replace("[0]", "[0, x]")),
                4,
                "`x`",
            ),
            (
                format!("board=\"b\"\n{}", cluster.replace("[0]", "[]")),
                4,
                "`cpus` is empty",
            ),
            (
                format!("board=\"b\"\n{}", cluster.replace("[0]", "[1, 1]")),
                4,
                "listed twice",
            ),
            (
                format!("board=\"b\"\n{}", cluster.replace("[0]", "0")),
                4,
                "must be an array",
            ),
            (
                format!("board=\"b\"\n{}", cluster.replace("generic", "a99")),
                5,
                "unknown core",
            ),
            (
                format!("board=\"b\"\n{cluster}freq_mhz = 1.5\n"),
                6,
                "`1.5`",
            ),
            (
                format!("board=\"b\"\n{cluster}{cluster}"),
                7,
                "defined twice",
            ),
            (
                format!("board=\"b\"\n{cluster}{}", cluster.replace("big", "little")),
                8,
                "cpu 0 is listed twice",
            ),
            (
                format!("board=\"b\"\n{}", cluster.replace("core", "#")),
                2,
                "without `core`",
            ),
            (
                format!("board=\"b\"\ndefault_cluster=\"little\"\n{cluster}"),
                2,
                "not a cluster",
            ),
            (cluster.to_string(), 0, "missing top-level `board"),
            ("board = \"b\"\n".into(), 0, "no [[cluster]]"),
        ];
        for (text, line, want) in cases {
            let e = parse_err(&text);
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.msg.contains(want), "{text:?}: got `{e}`, want `{want}`");
            assert!(e.to_string().starts_with("t.toml:"), "{e}");
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
        let rk = Target::parse(RK3399, "rk3399.toml").unwrap();
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

        let host = Target::parse(HOST, "host.toml").unwrap();
        assert_eq!(CpuSelection::Big.resolve(&host), Ok(vec![0, 1]));
        assert_eq!(CpuSelection::Little.resolve(&host), Ok(vec![0, 1]));

        // Two clusters, neither called big: an error naming what exists.
        let odd = Target::parse(
            "board=\"o\"\n[[cluster]]\nname=\"a\"\ncpus=[0]\ncore=\"generic\"\n\
             [[cluster]]\nname=\"b\"\ncpus=[1]\ncore=\"generic\"\n",
            "o.toml",
        )
        .unwrap();
        let e = CpuSelection::Big.resolve(&odd).unwrap_err();
        assert!(e.contains("no `big` cluster (it has: a, b)"), "{e}");
    }
}
