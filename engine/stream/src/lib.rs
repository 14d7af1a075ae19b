//! # idgraph-stream — the Kafka streaming engine (`idgraph run`)
//!
//! Ingest reads the input topics and sends a `Route` per event over
//! `idgraph.cmd`; the core runs the partitions of ADR 0002 on the
//! `idgraph.cmd` partitions it owns, commits state and progress in one RocksDB write
//! per batch, then produces the batch's records and, last, its changelog
//! markers with an idempotent producer (ADR 0003, ADR 0004), on a thread
//! of its own while the next batch is applied (ADR 0009).
//!
//! # Layout
//! - [`config`]: what the engine needs to run (built by the binary).
//! - [`avro`]: the Avro wire format: decoding inputs (local or registry
//!   schemas), encoding records, the strict JSON-against-schema check.
//! - [`registry`]: the schema registry client (look up by ID, register).
//! - [`out_format`]: output values as JSON or Avro (ADR 0005).
//! - [`error`]: the crate's error type, classified.
//! - [`fault`]: fault injection points for crash tests.
//! - [`client`]: the one factory of rdkafka clients.
//! - [`topics`]: topic names, creation and the partition-count check.
//! - [`envelope`]: the framing of records on `idgraph.cmd`.
//! - [`outbox`]: the records a batch produces and the producer that
//!   delivers them.
//! - [`resume`]: exact resume on brokers that skip the rest of a record
//!   batch when fetching from inside it.
//! - [`window`]: the poll batch (first-record wait, then linger).
//! - [`ingest`]: input topics to `Route` envelopes and rejects.
//! - [`meta`]: a partition's stream position, de-dup marks and changelog
//!   position.
//! - [`changelog`]: changelog records, batch markers, and the chain that
//!   rebuilds a partition from them; `changelog_sim` (tests) simulates
//!   owners crashing and a cleaner compacting against an oracle.
//! - [`rebalance`]: the core's consumer group: assignment changes.
//! - [`reach`]: the start-up check that the brokers answer, with librdkafka's reasons.
//! - [`restore`]: restoring assigned partitions before they resume.
//! - [`fence`]: taking, claiming and giving up partitions; standing by
//!   while another instance writes one.
//! - [`worker`]: the partitions' batch loop over `idgraph.cmd`.
//! - [`lag`]: the core's consumer lag, asked of the broker off the worker's thread.
//! - [`tail`]: a batch's delivery, overlapping the next batch.
//! - [`metrics`]: counters and histograms, Prometheus text.
//! - [`http`]: `/metrics`, `/healthz`, `/readyz`.
//! - [`embedded`]: the in-process mock broker of `make run`.
//! - [`engine`]: wiring, start-up and graceful shutdown.

pub mod avro;
pub mod changelog;
#[cfg(test)]
mod changelog_sim;
pub mod client;
pub mod config;
pub mod embedded;
pub mod engine;
pub mod envelope;
pub mod error;
pub mod fault;
pub mod fence;
pub mod http;
pub mod ingest;
pub mod lag;
pub mod meta;
pub mod metrics;
pub mod out_format;
pub mod outbox;
pub mod reach;
pub mod rebalance;
pub mod registry;
pub mod restore;
pub mod resume;
pub mod tail;
pub mod topics;
pub mod window;
pub mod worker;

pub use config::{EngineConfig, InputSpec};
pub use engine::run;
pub use error::StreamError;
