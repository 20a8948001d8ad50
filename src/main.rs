//! The `valuelens` command line: parses the arguments and hands each command to its handler in
//! `cli/`, which calls the library. Errors end here: one line on stderr, exit code 1.

mod cli;

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

use cli::args::{Cli, Command};

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Score(args) => cli::engine::score(args),
        Command::Run(args) => cli::benchmark::run(args),
        Command::Bench(args) => cli::engine::bench(args),
        Command::Compare(args) => cli::engine::compare(args),
        Command::Tokenize(args) => cli::engine::tokenize(args),
        Command::Metrics(args) => cli::benchmark::metrics(args),
        Command::Export(args) => cli::models::export_model(args),
        Command::Models { action } => cli::models::models(action),
    }
}
