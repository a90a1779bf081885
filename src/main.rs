//! The `shortener` binary: parse the command line, set up logging, hand over to the library.

use std::process::ExitCode;

use clap::Parser;
use shortener::config::Cli;

/// mimalloc rather than the system allocator: a redirect allocates a dozen small blocks, often
/// freed on another thread, where glibc's allocator spends more than the handler itself.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    shortener::telemetry::init(cli.log_format);
    shortener::run(cli).await
}
