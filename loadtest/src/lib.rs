//! # idgraph-loadtest — synthetic touchpoints with ground truth
//!
//! # Layout
//! - `gen.rs`: the person/device/event model and the NDJSON writers.
//! - `score.rs`: pairwise precision / recall / F1 of profiles against truth.
//! - `bin/loadgen.rs`, `bin/score.rs`, `bin/ufbase.rs`, `bin/parsebench.rs`:
//!   command lines (the in-memory union-find baseline of `make bench-core`,
//!   the parser alone for `make bench-parse`).

pub mod gen;
pub mod score;

use idgraph_core::config::CoreConfig;
use idgraph_core::input::{Format, InputMapping, Parser};
use idgraph_core::normalize::Normalizer;
use std::sync::Arc;

/// The parser `replay` uses with the default config, for the benchmark
/// tools: `format` is `segment` or `canonical`.
pub fn default_parser(format: &str) -> anyhow::Result<Parser> {
    let format = match format {
        "segment" => Format::Segment,
        "canonical" => Format::Canonical,
        other => anyhow::bail!("--format: `{other}` is not one of segment, canonical"),
    };
    Ok(Parser::new(format, InputMapping::default(), Normalizer::new(Arc::new(CoreConfig::default()))))
}
