use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    // A bug must still end in one line, not a backtrace (exit code 101 as for any panic).
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("eq: internal error{at}: {}", msg.replace('\n', " "));
    }));
    let cli = eq_tools::cli::Cli::parse();
    match eq_tools::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, the whole cause chain: "file: what went wrong".
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("eq: error: {msg}");
            ExitCode::FAILURE
        }
    }
}
