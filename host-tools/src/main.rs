use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
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
