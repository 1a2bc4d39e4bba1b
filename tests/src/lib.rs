//! Cross-crate tests for sockeye.
//!
//! * `tests/` (integration tests): the corpus replay of the fuzz targets
//!   (`fuzz_corpus.rs`), and conformance runs such as Autobahn
//!   (`autobahn/`).
//! * [`fuzzing`]: the logic of every cargo-fuzz target in `fuzz/` (input
//!   decoding and invariant checks), shared by the fuzzer binaries and the
//!   replay test so that each target has exactly one implementation, and
//!   the generator of the seed corpus.

pub mod fuzzing;
