//! Wiring: topics, HTTP, the core worker (this thread) and ingest (its own
//! thread); graceful shutdown when `stop` is set (each loop finishes its
//! batch, its records are delivered, the state flushed).

use crate::avro::AvroDecoder;
use crate::config::EngineConfig;
use crate::error::StreamError;
use crate::http;
use crate::ingest::{Ingest, InputParser};
use crate::metrics::Metrics;
use crate::out_format::OutFormat;
use crate::outbox::Sender;
use crate::topics::{self, Topics};
use crate::worker::Worker;
use idgraph_core::input::Parser;
use idgraph_core::normalize::Normalizer;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// What a started engine tells its caller.
#[derive(Debug, Clone)]
pub struct Started {
    pub http: SocketAddr,
    pub topics: Topics,
}

/// Runs the engine until `stop` is set or a part fails.
pub fn run(cfg: EngineConfig, stop: Arc<AtomicBool>, on_start: impl FnOnce(&Started)) -> Result<(), StreamError> {
    let topics = Topics::new(&cfg.topic_prefix);
    // Avro outputs: their schemas are registered (once) before anything
    // else; a registry that refuses stops start-up.
    let out = Arc::new(OutFormat::new(&cfg.outputs, &topics)?);
    if let Some(ids) = out.ids() {
        tracing::info!(?ids, "output values are Avro (Confluent wire format)");
    }
    crate::reach::reach(&cfg.cluster, std::time::Duration::from_secs(60))?;
    if cfg.create_topics {
        topics::create(&cfg.cluster, &topics.specs(cfg.partitions), cfg.replication_factor)?;
    }
    topics::check(&cfg.cluster, &topics, cfg.partitions)?;
    topics::check_changelog_configs(&cfg.cluster, &topics.changelog);
    let metrics = Arc::new(Metrics::new());
    let http_stop = Arc::new(AtomicBool::new(false));
    let (addr, http) = http::serve(&cfg.http_listen, metrics.clone(), http_stop.clone())?;
    on_start(&Started { http: addr, topics: topics.clone() });

    let worker = Worker::open(cfg.clone(), &topics, metrics.clone(), out.clone())?;
    let mut parsers: Vec<InputParser> = Vec::with_capacity(cfg.inputs.len());
    for i in &cfg.inputs {
        parsers.push(InputParser {
            topic: i.topic.clone(),
            parser: Parser::new(i.format, i.mapping.clone(), Normalizer::new(cfg.core.clone())),
            avro: i.avro.as_ref().map(AvroDecoder::new).transpose()?,
        });
    }
    let sender = Sender::new(&cfg.cluster, cfg.compression, topics.clone())?;
    let ingest = Ingest::new(&cfg, sender, parsers, metrics, out)?;
    let ingest_stop = stop.clone();
    let ingest = std::thread::Builder::new()
        .name("ingest".into())
        .spawn(move || {
            let r = ingest.run(&ingest_stop);
            if r.is_err() {
                // One failing part stops the whole engine.
                ingest_stop.store(true, Ordering::Relaxed);
            }
            r
        })
        .map_err(|e| StreamError::Internal(format!("cannot start the ingest thread: {e}")))?;
    let core = worker.run(&stop);
    if core.is_err() {
        stop.store(true, Ordering::Relaxed);
    }
    let ingest = ingest.join().unwrap_or_else(|_| Err(StreamError::Internal("the ingest thread panicked".into())));
    http_stop.store(true, Ordering::Relaxed);
    let _ = http.join();
    core?;
    ingest
}
