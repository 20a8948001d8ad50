//! The `valuelens` command line: parses the arguments and hands each command to its handler in
//! `cli/`, which calls the library. Errors end here: one line on stderr, exit code 1.

mod cli;

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

use cli::args::{Cli, Command};

/// mimalloc rather than the system allocator: a forward allocates and frees buffers of tens of
/// MB per layer, which glibc hands back to the kernel and faults in again page by page (half a
/// million page faults on one Task-1 workload sample); mimalloc keeps them for reuse.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (its place in the `mi_option_e` enum of mimalloc 2 and 3,
/// which libmimalloc-sys does not name).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> ExitCode {
    // Freed memory stays committed for reuse instead of being handed back to the kernel 10 ms
    // later: forwards free and allocate the same large buffers again, and faulting them back
    // in (the kernel zeroing each page) took a fifth of a `quantized` forward's time
    // (`perf`, Task-2 workload); with this, 15 % less time for 5 % more resident memory.
    // SAFETY: setting an option is allowed at any time; nothing else runs yet.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
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
        Command::Explain(args) => cli::explain::explain(args),
        Command::Score(args) => cli::engine::score(args),
        Command::Run(args) => cli::benchmark::run(args),
        Command::Merge(args) => cli::benchmark::merge(args),
        Command::Bench(args) => cli::engine::bench(args),
        Command::Compare(args) => cli::engine::compare(args),
        Command::Tokenize(args) => cli::engine::tokenize(args),
        Command::Metrics(args) => cli::benchmark::metrics(args),
        Command::Leaderboard(args) => cli::benchmark::leaderboard(args),
        Command::Export(args) => cli::models::export_model(args),
        Command::Serve(args) => cli::serve::serve(args),
        Command::Models {
            action,
            local,
            json,
        } => match local {
            true => cli::models::list_local(json),
            false => cli::models::models(action),
        },
    }
}
