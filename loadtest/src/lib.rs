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
/// As for the engine, `IDGRAPH__KAFKA__CLIENT__SASL_PASSWORD` and its
/// kind give properties from the environment (secrets stay out of `ps`);
/// `-X` wins over them.
pub fn cluster(brokers: &str, properties: &[String]) -> anyhow::Result<idgraph_stream::client::Cluster> {
    cluster_with_env(brokers, properties, std::env::vars())
}

fn cluster_with_env(
    brokers: &str,
    properties: &[String],
    env: impl IntoIterator<Item = (String, String)>,
) -> anyhow::Result<idgraph_stream::client::Cluster> {
    let mut props: Vec<(String, String)> = Vec::new();
    for (k, v) in env {
        if let Some(name) = k.strip_prefix("IDGRAPH__KAFKA__CLIENT__") {
            props.push((name.to_ascii_lowercase().replace('_', "."), v));
        }
    }
    for p in properties {
        let Some((k, v)) = p.split_once('=') else { anyhow::bail!("-X `{p}`: write KEY=VALUE") };
        props.retain(|(name, _)| name != k);
        props.push((k.to_string(), v.to_string()));
    }
    for (k, v) in &props {
        idgraph_stream::client::check_property(k, v).map_err(|e| anyhow::anyhow!("property {k}: {e}"))?;
    }
    Ok(idgraph_stream::client::Cluster { brokers: brokers.to_string(), properties: props })
}

#[cfg(test)]
mod tests {
    #[test]
    fn tool_properties_come_from_x_options_and_the_environment() {
        let env = [("IDGRAPH__KAFKA__CLIENT__SASL_PASSWORD".to_string(), "s3cr3t".to_string()), ("OTHER".into(), "x".into())];
        let props = ["security.protocol=sasl_ssl".to_string(), "sasl.mechanisms=PLAIN".to_string()];
        let c = super::cluster_with_env("b:9093", &props, env).unwrap();
        assert!(c.properties.contains(&("sasl.password".into(), "s3cr3t".into())));
        assert!(c.properties.contains(&("security.protocol".into(), "sasl_ssl".into())));
        assert!(super::cluster_with_env("b", &["acks=1".to_string()], []).unwrap_err().to_string().contains("acks"));
        assert!(super::cluster_with_env("b", &["nokey".to_string()], []).is_err());
    }
}
