//! eq-bench: times whole models like ncnn's benchncnn, per precision, thread count and CPU
//! cluster. The logic lives in the `eq_bench` library; see `eq-bench --help`.
//! Every error is one line on stderr and exit code 2.

use eq_bench::{self as bench, board, Args, Command, Placement, Precision, Record};
use eq_runtime::target::Target;
use std::io::Write;
use std::process::ExitCode;

/// Writes a line to stdout, ignoring a closed pipe (`eq-bench … | head`).
fn say(line: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

fn run(args: Args) -> Result<(), String> {
    let target = match &args.target {
        Some(path) => board::load(path).map_err(|e| e.to_string())?,
        None => Target::detect(),
    };
    // No --cluster: the target's default cluster (big on RK3399) when there is a choice to
    // make; a single-cluster machine runs unpinned, as ncnn does there.
    let (cluster, cpus) = match &args.cluster {
        Some(sel) => (sel.to_string(), sel.resolve(&target)?),
        None if target.clusters.len() > 1 => {
            let name = target.default_cluster.clone();
            let cpus = target.cluster(&name).map(|c| c.cpus.clone());
            (name, cpus.unwrap_or_default())
        }
        None => ("none".to_string(), Vec::new()),
    };
    // L2 for tiling when sysfs has none: the smallest among the clusters used.
    let l2_bytes = target
        .clusters
        .iter()
        .filter(|c| cpus.is_empty() || c.cpus.iter().any(|id| cpus.contains(id)))
        .filter_map(|c| c.l2_kib.map(|k| k * 1024))
        .min();
    let place = Placement {
        cpus: cpus.clone(),
        l2_bytes,
    };
    // Worker 0 is this thread; pool workers are pinned by the net (`Options::cpus`).
    if let Some(&first) = cpus.first() {
        if !core_affinity::set_for_current(core_affinity::CoreId { id: first }) {
            eprintln!("eq-bench: warning: could not pin the main thread to cpu {first}");
        }
    }
    // Unpinned runs may use any core of the machine.
    let used = if cpus.is_empty() {
        target.all_cpus()
    } else {
        cpus.clone()
    };
    let cores: Vec<String> = target
        .cores_of(&used)
        .into_iter()
        .map(|k| k.name().to_string())
        .collect();
    // Part numbers as the machine reports them (sysfs, /proc/cpuinfo, else MIDR_EL1 of this
    // thread): the JSON then shows which cores really ran, not only what the target file says.
    let mut parts: Vec<u32> = Vec::new();
    for info in eq_runtime::cpu::detect() {
        if used.contains(&info.id) {
            if let Some(p) = info.part.filter(|p| !parts.contains(p)) {
                parts.push(p);
            }
        }
    }

    // Check every file before timing anything.
    let mut models = Vec::with_capacity(args.models.len());
    for (i, param) in args.models.iter().enumerate() {
        let bin = args.bins.get(i).map(|b| b.as_path());
        models.push(bench::prepare_model(param, bin, args.shape)?);
    }
    if args.gemm_shapes {
        for model in &models {
            let net = bench::load(model, Precision::Fp32, 1, &Placement::default(), false)?;
            say(&format!("model {}", model.name));
            for shape in bench::gemm_shapes(&net)? {
                say(&shape.line());
            }
        }
        return Ok(());
    }
    if let Some(path) = &args.json {
        std::fs::write(path, "").map_err(|e| format!("{}: {e}", path.display()))?;
    }

    let cpu_list: Vec<String> = cpus.iter().map(|c| c.to_string()).collect();
    say(&format!(
        "target = {}  cluster = {cluster}  cpus = [{}]  cores = [{}]",
        target.board,
        cpu_list.join(","),
        cores.join(",")
    ));
    let part_list: Vec<String> = parts.iter().map(|p| format!("{p:#05x}")).collect();
    say(&format!(
        "parts = [{}]  commit = {}",
        part_list.join(","),
        bench::GIT_COMMIT
    ));
    say(&bench::kernel_summary());
    say(&format!(
        "loops = {}  warmup = {}  cooldown = {:.1} s  weights = {}{}",
        args.loops,
        args.warmup,
        args.cooldown.as_secs_f64(),
        if args.bins.is_empty() {
            "zeros"
        } else {
            "--bin"
        },
        if args.fp16_weights {
            " (InnerProduct fp16)"
        } else {
            ""
        }
    ));

    let mut records = Vec::new();
    for model in &models {
        if !args.cooldown.is_zero() {
            std::thread::sleep(args.cooldown);
        }
        for &precision in &args.precisions {
            for &threads in &args.threads {
                if let Some(why) = precision.unavailable(model.quantized, model.bin.is_none()) {
                    say(&bench::skipped_line(&model.name, precision, threads, why));
                    continue;
                }
                let mut net = bench::load(model, precision, threads, &place, args.fp16_weights)?;
                let timing = bench::time_net(&mut net, args.warmup, args.loops)
                    .map_err(|e| format!("{}: {e}", model.name))?;
                say(&bench::result_line(
                    &model.name,
                    precision,
                    threads,
                    &timing,
                ));
                if args.layers {
                    let layers = bench::profile_layers(&mut net, args.loops)
                        .map_err(|e| format!("{}: {e}", model.name))?;
                    for line in bench::layer_lines(&layers) {
                        say(&line);
                    }
                }
                if args.workers {
                    let lines = bench::profile_workers(&mut net, args.loops)
                        .map_err(|e| format!("{}: {e}", model.name))?;
                    for line in lines {
                        say(&line);
                    }
                }
                drop(net);
                records.push(Record {
                    model: model.name.clone(),
                    precision,
                    threads,
                    timing,
                    cluster: cluster.clone(),
                    cpus: cpus.clone(),
                    cores: cores.clone(),
                    parts: parts.clone(),
                    loops: args.loops,
                    warmup: args.warmup,
                    commit: bench::GIT_COMMIT.to_string(),
                });
            }
        }
    }
    // The seed paper's table layout, after the per-run lines.
    if !records.is_empty() {
        say("");
        for line in bench::seed_table(&records) {
            say(&line);
        }
    }
    if let Some(path) = &args.json {
        std::fs::write(path, bench::records_json(&records))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Result<Vec<String>, String> = std::env::args_os()
        .skip(1)
        .map(|a| {
            a.into_string()
                .map_err(|a| format!("argument {a:?} is not valid UTF-8"))
        })
        .collect();
    let result = match args.and_then(bench::parse_args) {
        Ok(Command::Help) => {
            say(bench::USAGE);
            Ok(())
        }
        Ok(Command::Run(args)) => run(*args),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("eq-bench: {e}");
            ExitCode::from(2)
        }
    }
}
