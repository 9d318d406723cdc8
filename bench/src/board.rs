//! Board files (`targets/*.toml`): a machine's CPU clusters written down, for benchmarking a
//! board other than the one detected (`Target::detect`). Read with serde and the toml crate
//! into the runtime's `Target`; the keys are documented at the top of `targets/rk3399.toml`.
//!
//! Errors name the file and the line (1-based, 0 when the problem is not on one line) and say
//! what is wrong: a TOML syntax error, an unknown key, a wrong type, a missing key, an unknown
//! core name, a CPU in two clusters, ...

use eq_runtime::cpu::CoreKind;
use eq_runtime::target::{Cluster, Target};
use serde::Deserialize;
use std::fmt;
use std::ops::Range;
use std::path::Path;
use toml::Spanned;

/// A board file that cannot be read or is malformed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoardError {
    pub file: String,
    /// 1-based; 0 when the problem is not on one line (missing file, missing `board`).
    pub line: usize,
    pub msg: String,
}

impl fmt::Display for BoardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: {}", self.file, self.line, self.msg)
        } else {
            write!(f, "{}: {}", self.file, self.msg)
        }
    }
}

impl std::error::Error for BoardError {}

/// The file as written. Keys are optional here so that a missing one is reported with the
/// line of its table and in this module's words.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BoardFile {
    board: Option<Spanned<String>>,
    default_cluster: Option<Spanned<String>>,
    #[serde(default)]
    cluster: Vec<Spanned<ClusterFile>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterFile {
    name: Option<Spanned<String>>,
    cpus: Option<Spanned<Vec<u64>>>,
    core: Option<Spanned<String>>,
    freq_mhz: Option<u64>,
    l2_kib: Option<u64>,
}

/// Core names accepted in board files (the names `CoreKind::name` prints).
fn core_from_name(name: &str) -> Option<CoreKind> {
    [CoreKind::CortexA53, CoreKind::CortexA72, CoreKind::Other]
        .into_iter()
        .find(|k| k.name() == name)
}

/// Reads a board file.
pub fn load(path: impl AsRef<Path>) -> Result<Target, BoardError> {
    let path = path.as_ref();
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| BoardError {
        file: file.clone(),
        line: 0,
        msg: e.to_string(),
    })?;
    parse(&text, &file)
}

/// Parses board file text; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<Target, BoardError> {
    // The 1-based line of a byte offset into `text`.
    let line_of = |offset: usize| {
        let end = offset.min(text.len());
        text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    };
    let err = |line: usize, msg: String| BoardError {
        file: file.to_string(),
        line,
        msg,
    };
    let at = |span: Range<usize>, msg: String| err(line_of(span.start), msg);

    let raw: BoardFile = toml::from_str(text).map_err(|e| {
        let mut msg = e.message().trim().replace('\n', "; ");
        match e.span() {
            Some(span) => {
                // toml says "duplicate key" and points at the key: name it.
                if msg == "duplicate key" {
                    if let Some(key) = text.get(span.clone()) {
                        msg = format!("duplicate key `{}`", key.trim());
                    }
                }
                at(span, msg)
            }
            None => err(0, msg),
        }
    })?;

    let nonempty = |key: &str, v: Spanned<String>| -> Result<(String, Range<usize>), BoardError> {
        let span = v.span();
        let s = v.into_inner();
        if s.is_empty() {
            return Err(at(span, format!("`{key}` is empty")));
        }
        Ok((s, span))
    };

    let board = match raw.board {
        Some(b) => nonempty("board", b)?.0,
        None => return Err(err(0, "missing top-level `board = \"…\"`".into())),
    };
    let default_cluster = raw
        .default_cluster
        .map(|d| nonempty("default_cluster", d))
        .transpose()?;
    if raw.cluster.is_empty() {
        return Err(err(0, "no [[cluster]] tables".into()));
    }

    let mut out: Vec<Cluster> = Vec::new();
    for t in raw.cluster {
        // The table's span starts at its `[[cluster]]` header.
        let header = t.span();
        let t = t.into_inner();
        let missing = |key: &str| at(header.clone(), format!("[[cluster]] without `{key}`"));
        let (name, name_span) = nonempty("name", t.name.ok_or_else(|| missing("name"))?)?;
        if out.iter().any(|c| c.name == name) {
            return Err(at(name_span, format!("cluster `{name}` is defined twice")));
        }
        let cpus = t.cpus.ok_or_else(|| missing("cpus"))?;
        let cpus_span = cpus.span();
        let cpus = cpus.into_inner();
        if cpus.is_empty() {
            return Err(at(cpus_span, "`cpus` is empty".into()));
        }
        let mut ids = Vec::with_capacity(cpus.len());
        for cpu in cpus {
            let id = usize::try_from(cpu)
                .ok()
                .filter(|&id| id < 4096)
                .ok_or_else(|| at(cpus_span.clone(), format!("cpu {cpu} is out of range")))?;
            if ids.contains(&id) || out.iter().any(|c| c.cpus.contains(&id)) {
                return Err(at(cpus_span, format!("cpu {id} is listed twice")));
            }
            ids.push(id);
        }
        let (core_name, core_span) = nonempty("core", t.core.ok_or_else(|| missing("core"))?)?;
        let core = core_from_name(&core_name).ok_or_else(|| {
            at(
                core_span,
                format!("unknown core `{core_name}` (expected cortex-a53, cortex-a72 or generic)"),
            )
        })?;
        out.push(Cluster {
            name,
            cpus: ids,
            core,
            freq_mhz: t.freq_mhz,
            l2_kib: t.l2_kib.map(|n| n as usize),
        });
    }

    let default_cluster = match default_cluster {
        Some((name, span)) => {
            if !out.iter().any(|c| c.name == name) {
                return Err(at(
                    span,
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

#[cfg(test)]
mod tests {
    use super::*;
    use eq_runtime::target::CpuSelection;

    const RK3399: &str = include_str!("../../targets/rk3399.toml");
    const HOST: &str = include_str!("../../targets/host.toml");

    fn parse_err(text: &str) -> BoardError {
        parse(text, "t.toml").unwrap_err()
    }

    #[test]
    fn reads_the_rk3399_file() {
        let t = parse(RK3399, "rk3399.toml").unwrap();
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
        let h = parse(HOST, "host.toml").unwrap();
        assert_eq!(h.board, "host");
        assert_eq!(h.default_cluster, "all");
        assert_eq!(h.clusters.len(), 1);
        assert_eq!(h.clusters[0].cpus, vec![0, 1]);
        assert_eq!(h.clusters[0].core, CoreKind::Other);
        assert_eq!(h.clusters[0].freq_mhz, None);
    }

    #[test]
    fn reads_the_files_from_disk() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../targets/");
        assert_eq!(
            load(format!("{dir}rk3399.toml")).unwrap(),
            parse(RK3399, "x").unwrap()
        );
        // Every board file of the repository reads.
        let mut n = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                load(&path).unwrap_or_else(|e| panic!("{e}"));
                n += 1;
            }
        }
        assert!(n >= 2, "{n} board files");
        let e = load(format!("{dir}nope.toml")).unwrap_err();
        assert!(e.to_string().contains("nope.toml"), "{e}");
        assert_eq!(e.line, 0);
    }

    #[test]
    fn accepts_toml_details() {
        let t = parse(
            "board = \"b#1\" # comment\n\n[[cluster]]\nname=\"x\"\ncpus = [ 0 , 1, ]\n\
             core = \"generic\"\nfreq_mhz = 1_416\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(t.board, "b#1");
        assert_eq!(t.clusters[0].cpus, vec![0, 1]);
        assert_eq!(t.clusters[0].freq_mhz, Some(1416));
        assert_eq!(t.default_cluster, "x", "no big cluster: the first one");
        // Any TOML spelling of the same values: multi-line arrays, literal strings.
        let t = parse(
            "board = 'b'\n[[cluster]]\nname = \"x\"\ncpus = [\n  0,\n  1,\n]\ncore = 'generic'\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(t.clusters[0].cpus, vec![0, 1]);
    }

    #[test]
    fn errors_name_file_and_line() {
        let cluster = "[[cluster]]\nname = \"big\"\ncpus = [0]\ncore = \"generic\"\n";
        let cases: Vec<(String, usize, &str)> = vec![
            (
                format!("board = \"b\"\n{cluster}speed = 3\n"),
                6,
                "unknown field `speed`",
            ),
            (
                "board = \"b\"\n[target]\n".into(),
                2,
                "unknown field `target`",
            ),
            (
                "board = \"b\"\nboard = \"c\"\n".into(),
                2,
                "duplicate key `board`",
            ),
            ("board = b\n".into(), 1, "string values must be quoted"),
            ("board = \"b\n".into(), 1, "invalid basic string"),
            (
                "board = 3\n".into(),
                1,
                "invalid type: integer `3`, expected a string",
            ),
            ("junk\n".into(), 1, "key with no value, expected `=`"),
            // An unclosed array: TOML arrays may span lines, so the error is where the next
            // key starts.
            (
                format!("board=\"b\"\n{}", cluster.replace("[0]", "[0,\n")),
                6,
                "in array",
            ),
            (
                format!("board=\"b\"\n{}", cluster.replace("[0]", "[0, x]")),
                4,
                "string values must be quoted",
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
                format!("board=\"b\"\n{}", cluster.replace("[0]", "[-1]")),
                4,
                "`-1`",
            ),
            (
                format!("board=\"b\"\n{}", cluster.replace("[0]", "[4096]")),
                4,
                "cpu 4096 is out of range",
            ),
            (
                format!("board=\"b\"\n{}", cluster.replace("[0]", "0")),
                4,
                "invalid type: integer `0`, expected a sequence",
            ),
            (
                format!("board=\"b\"\n{}", cluster.replace("generic", "a99")),
                5,
                "unknown core `a99`",
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
            (format!("board=\"\"\n{cluster}"), 1, "`board` is empty"),
            (cluster.to_string(), 0, "missing top-level `board"),
            ("board = \"b\"\n".into(), 0, "no [[cluster]]"),
        ];
        for (text, line, want) in cases {
            let e = parse_err(&text);
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.msg.contains(want), "{text:?}: got `{e}`, want `{want}`");
            assert!(!e.msg.is_empty(), "{text:?}: {e}");
            assert!(!e.to_string().contains('\n'), "one line: {e}");
            assert!(e.to_string().starts_with("t.toml:"), "{e}");
        }
    }

    #[test]
    fn resolves_selections_against_the_files() {
        let rk = parse(RK3399, "rk3399.toml").unwrap();
        assert_eq!(CpuSelection::Big.resolve(&rk), Ok(vec![4, 5]));
        assert_eq!(CpuSelection::Little.resolve(&rk), Ok(vec![0, 1, 2, 3]));
        assert_eq!(
            rk.cores_of(&[0, 4]),
            vec![CoreKind::CortexA53, CoreKind::CortexA72]
        );
        let host = parse(HOST, "host.toml").unwrap();
        assert_eq!(CpuSelection::Big.resolve(&host), Ok(vec![0, 1]));
        // Two clusters, neither called big: an error naming what exists.
        let odd = parse(
            "board=\"o\"\n[[cluster]]\nname=\"a\"\ncpus=[0]\ncore=\"generic\"\n\
             [[cluster]]\nname=\"b\"\ncpus=[1]\ncore=\"generic\"\n",
            "o.toml",
        )
        .unwrap();
        let e = CpuSelection::Big.resolve(&odd).unwrap_err();
        assert!(e.contains("no `big` cluster (it has: a, b)"), "{e}");
    }
}
