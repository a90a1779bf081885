//! The `shortener` binary: parse the command line, set up logging, hand over to the library.

use std::process::ExitCode;

use clap::Parser;
use shortener::config::Cli;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    shortener::telemetry::init(cli.log_format);
    shortener::run(cli).await
}
