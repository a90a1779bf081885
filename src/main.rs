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
    without_huge_pages();
    shortener::run(cli).await
}

/// Turns transparent huge pages off for this process (the kernel checks at every page fault,
/// so memory mapped before this call is covered too).
///
/// mimalloc asks for huge pages on the memory it maps (`MADV_HUGEPAGE`), so the first touch of
/// a 2 MiB range it had not used yet, or had handed back to the OS, faulted in and zeroed a
/// whole huge page on the request's thread. Under a churning working set (a Zipf mix over 1M
/// links, where the link cache turns over) that was about 5% of the CPU, and it made the p99
/// of redirects 5-23 ms instead of about 3 ms; the process also held 20-30 MiB more. Creates
/// and imports measured the same or a little faster without huge pages, and so, measured
/// again later, did hot redirects, whose p99 huge pages took from under 1 ms to 11-51 ms.
#[cfg(target_os = "linux")]
fn without_huge_pages() {
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        // A sandbox may refuse the call; the service works the same, with a slower tail.
        tracing::debug!(error = %e, "could not turn transparent huge pages off");
    }
}

#[cfg(not(target_os = "linux"))]
fn without_huge_pages() {}
