//! # idgraph-loadtest — synthetic touchpoints with ground truth
//!
//! # Layout
//! - `gen.rs`: the person/device/event model and the NDJSON writers.
//! - `score.rs`: pairwise precision / recall / F1 of profiles against truth.
//! - `bin/loadgen.rs`, `bin/score.rs`, `bin/ufbase.rs`: command lines (the
//!   last is the in-memory union-find baseline of `make bench-core`).

pub mod gen;
pub mod score;
