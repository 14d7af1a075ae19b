//! What the engine needs to run; the binary builds it from the TOML config.

use idgraph_core::config::CoreConfig;
use idgraph_core::input::{Format, InputMapping};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct InputSpec {
    pub topic: String,
    /// The JSON shape of the records (after Avro decoding, if any).
    pub format: Format,
    pub mapping: InputMapping,
    /// Avro records in the Confluent wire format, and their schemas.
    pub avro: Option<crate::avro::AvroSpec>,
}

/// Where the ingest group starts on an input partition without a usable
/// committed offset (its first start on a topic, or an offset out of range
/// or expired): the consumer's `auto.offset.reset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StartAt {
    /// The oldest record the broker still holds: the topic's history is read.
    #[default]
    Earliest,
    /// Only records produced from now on.
    Latest,
}

impl StartAt {
    pub fn as_reset(self) -> &'static str {
        match self {
            StartAt::Earliest => "earliest",
            StartAt::Latest => "latest",
        }
    }
}

/// How the engine's producers compress record batches (their
/// `compression.type`). `lz4` by default, as producers in production
/// usually do: the profiles' JSON and the changelog shrink severalfold
/// on the broker's disk and network. `none` saves the CPU of compressing
/// and decompressing on both ends where the broker is local or the
/// network fast (about a tenth of the engine's CPU per event against a
/// broker on the same machine: docs/BENCHMARKS.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    #[default]
    Lz4,
}

impl Compression {
    pub fn as_codec(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
        }
    }
}

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The brokers and the operator's client properties (TLS, SASL).
    pub cluster: crate::client::Cluster,
    pub group_id: String,
    pub topic_prefix: String,
    /// Replication factor of the topics the engine creates.
    pub replication_factor: i32,
    /// Where ingest starts on input partitions without a usable committed
    /// offset.
    pub input_start: StartAt,
    /// Compression of every record batch the engine produces.
    pub compression: Compression,
    pub inputs: Vec<InputSpec>,
    pub partitions: u16,
    pub state_dir: PathBuf,
    pub block_cache_mb: u32,
    pub write_buffer_mb: u32,
    pub cache_entries: usize,
    /// Owner cache of all partitions, bytes.
    pub owner_cache_bytes: usize,
    pub http_listen: String,
    /// Records taken from `idgraph.cmd` per committed batch (at most).
    pub max_batch_records: usize,
    /// How long a batch waits for more records once it has one, ms.
    pub batch_linger_ms: u64,
    /// Create missing topics at start (not on the embedded broker, where
    /// the caller creates them).
    pub create_topics: bool,
    /// How the output topics' values are written (JSON or Avro).
    pub outputs: crate::out_format::OutputSpec,
    pub core: Arc<CoreConfig>,
}
