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

/// The tools' connection: `--brokers` and their `-X KEY=VALUE` librdkafka
/// properties (TLS, SASL), checked as the engine checks `kafka.client`.
pub fn cluster(brokers: &str, properties: &[String]) -> anyhow::Result<idgraph_stream::client::Cluster> {
    let mut props = Vec::with_capacity(properties.len());
    for p in properties {
        let Some((k, v)) = p.split_once('=') else { anyhow::bail!("-X `{p}`: write KEY=VALUE") };
        idgraph_stream::client::check_property(k, v).map_err(|e| anyhow::anyhow!("-X {k}: {e}"))?;
        props.push((k.to_string(), v.to_string()));
    }
    Ok(idgraph_stream::client::Cluster { brokers: brokers.to_string(), properties: props })
}
