//! Shared code of the fuzz targets: the structured engine fuzzer lives here (not in the target
//! file) so `cargo test` on stable can replay its corpus and regressions without libFuzzer.

pub mod checks;
pub mod engine;
pub mod frames;
pub mod setup;
