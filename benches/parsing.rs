//! Micro-benchmarks of code generation and URL parsing (filled in by the criterion suite).
fn main() {}
