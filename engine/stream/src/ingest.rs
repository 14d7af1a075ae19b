//! Ingest: the input topics (consumer group `kafka.group-id`) to `Route`
//! envelopes on `idgraph.cmd` and rejects on `idgraph.rejects`.
//!
//! Stateless by design (ADR 0003): a poll batch is parsed, its envelopes
//! (one per input partition and destination partition) and rejects are
//! produced and acknowledged, then the consumed offsets are committed.
//! After a crash the batch is read and sent again; the core drops events
//! whose input offset it has already applied.

use crate::avro::AvroDecoder;
use crate::client;
use crate::config::EngineConfig;
use crate::envelope::Envelope;
use crate::error::StreamError;
use crate::metrics::Metrics;
use crate::out_format::OutFormat;
use crate::outbox::{Dest, OutRecord, Sender};
use crate::resume::{Resume, Verdict};
use crate::window::Window;
use idgraph_core::event::Touchpoint;
use idgraph_core::input::Parser;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::ClientContext;
use rdkafka::{Offset, TopicPartitionList};
use rustc_hash::FxHashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Records per ingest batch (at most).
const MAX_BATCH: usize = 20_000;
/// How long a batch waits for more records once it has one.
const LINGER: Duration = Duration::from_millis(5);

/// Records the partitions each rebalance assigns, so that ingest can check
/// it resumes each of them exactly at its committed offset.
#[derive(Debug, Default)]
pub struct IngestContext {
    assigned: Mutex<Vec<(String, i32)>>,
    changed: AtomicBool,
}

impl ClientContext for IngestContext {}

impl ConsumerContext for IngestContext {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = r {
            if let Ok(mut a) = self.assigned.lock() {
                a.extend(tpl.elements().iter().map(|e| (e.topic().to_string(), e.partition())));
                self.changed.store(true, Ordering::Release);
            }
        }
    }
}

/// Sets the resume expectation of newly assigned partitions to their
/// committed offsets.
fn sync_assignments(consumer: &BaseConsumer<IngestContext>, resume: &mut Resume) {
    let ctx = consumer.context();
    if !ctx.changed.swap(false, Ordering::Acquire) {
        return;
    }
    let new: Vec<(String, i32)> = ctx.assigned.lock().map(|mut a| std::mem::take(&mut *a)).unwrap_or_default();
    tracing::info!(partitions = new.len(), "input partitions assigned");
    let mut tpl = TopicPartitionList::new();
    for (t, p) in &new {
        tpl.add_partition(t, *p);
    }
    match consumer.committed_offsets(tpl, Duration::from_secs(10)) {
        Ok(c) => {
            for e in c.elements() {
                match e.offset() {
                    Offset::Offset(o) => resume.expect(e.topic(), e.partition(), o),
                    _ => resume.forget(e.topic(), e.partition()),
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot read committed offsets; resuming where the broker delivers"),
    }
}

/// How one input topic's records become touchpoints.
#[derive(Debug)]
pub struct InputParser {
    pub topic: String,
    pub parser: Parser,
    /// Avro inputs: the wire-format decoder (to the parser's JSON).
    pub avro: Option<AvroDecoder>,
}

pub struct Ingest {
    consumer: BaseConsumer<IngestContext>,
    resume: Resume,
    sender: Sender,
    parsers: Vec<InputParser>,
    partitions: u16,
    metrics: Arc<Metrics>,
    /// The value format of `idgraph.rejects`.
    out: Arc<OutFormat>,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest").field("partitions", &self.partitions).finish_non_exhaustive()
    }
}

/// One input partition's share of a batch.
struct Slice {
    /// Per destination partition: the oldest input timestamp (ms) and the
    /// (offset, event) items.
    items: FxHashMap<u16, (i64, Vec<(i64, Touchpoint)>)>,
    next_offset: i64,
}

impl Ingest {
    pub fn new(
        cfg: &EngineConfig,
        sender: Sender,
        parsers: Vec<InputParser>,
        metrics: Arc<Metrics>,
        out: Arc<OutFormat>,
    ) -> Result<Self, StreamError> {
        let partitions = cfg.partitions;
        let consumer: BaseConsumer<IngestContext> = client::consumer(&cfg.cluster, &cfg.group_id)
            .set("auto.offset.reset", cfg.input_start.as_reset())
            .create_with_context(IngestContext::default())
            .map_err(StreamError::kafka("ingest consumer"))?;
        let topics: Vec<&str> = parsers.iter().map(|p| p.topic.as_str()).collect();
        consumer.subscribe(&topics).map_err(StreamError::kafka("subscribe to the input topics"))?;
        Ok(Self { consumer, resume: Resume::default(), sender, parsers, partitions, metrics, out })
    }

    /// Runs until `stop`; the batch in hand is finished first.
    pub fn run(mut self, stop: &AtomicBool) -> Result<(), StreamError> {
        while !stop.load(Ordering::Relaxed) {
            sync_assignments(&self.consumer, &mut self.resume);
            self.resume.tick(&self.consumer);
            self.batch()?;
        }
        Ok(())
    }

    fn batch(&mut self) -> Result<(), StreamError> {
        let mut slices: FxHashMap<(usize, i32), Slice> = FxHashMap::default();
        let mut rejects: Vec<OutRecord> = Vec::new();
        let mut n = 0usize;
        let mut window = Window::new(LINGER);
        let (t0, mut polling) = (Instant::now(), Duration::ZERO);
        while n < MAX_BATCH {
            let tp = Instant::now();
            let next = window.next(&self.consumer, "ingest");
            polling += tp.elapsed();
            let Some(m) = next else { break };
            sync_assignments(&self.consumer, &mut self.resume);
            if self.resume.check(&self.consumer, m.topic(), m.partition(), m.offset()) == Verdict::Skip {
                continue;
            }
            n += 1;
            let Some(ti) = self.parsers.iter().position(|p| p.topic == m.topic()) else { continue };
            let (topic, partition, offset) = (m.topic(), m.partition(), m.offset());
            let ts = m.timestamp().to_millis().unwrap_or(0);
            self.metrics.events_in.add(topic, 1);
            let slice = slices.entry((ti, partition)).or_insert_with(|| Slice { items: FxHashMap::default(), next_offset: 0 });
            slice.next_offset = offset + 1;
            let payload = m.payload().unwrap_or_default();
            let input = &mut self.parsers[ti];
            let decoded;
            let json = match &mut input.avro {
                None => payload,
                Some(avro) => match avro.decode(payload)? {
                    Ok(j) => {
                        decoded = j;
                        &decoded[..]
                    }
                    Err(reason) => {
                        self.metrics.rejects.add(reason.code(), 1);
                        rejects.push(reject(topic, partition, offset, reason.code(), &reason.to_string(), self.out.reject(payload)?));
                        continue;
                    }
                },
            };
            match input.parser.parse(json) {
                // The parser rejects events left without identifiers.
                Ok(ev) => {
                    let dest = ev.idents[0].partition(self.partitions);
                    let (oldest, items) = slice.items.entry(dest).or_insert((i64::MAX, Vec::new()));
                    *oldest = (*oldest).min(ts);
                    items.push((offset, ev));
                }
                Err(reason) => {
                    self.metrics.rejects.add(reason.code(), 1);
                    rejects.push(reject(topic, partition, offset, reason.code(), &reason.to_string(), self.out.reject(payload)?));
                }
            }
        }
        for (name, k) in self.parsers.iter_mut().flat_map(|p| std::mem::take(&mut p.parser.drops).iter().collect::<Vec<_>>()) {
            self.metrics.identifiers_dropped.add(name, k);
        }
        let ph = &self.metrics.phase_seconds;
        ph.add("ingest_poll", polling);
        if n == 0 {
            return Ok(());
        }
        let mut out: Vec<OutRecord> = Vec::with_capacity(slices.len() * 2 + rejects.len());
        let mut commit = TopicPartitionList::new();
        let mut keys: Vec<_> = slices.keys().copied().collect();
        keys.sort_unstable();
        for key in keys {
            let Some(slice) = slices.remove(&key) else { continue };
            let topic = &self.parsers[key.0].topic;
            let mut dests: Vec<_> = slice.items.into_iter().collect();
            dests.sort_unstable_by_key(|(d, _)| *d);
            for (dest, (oldest, items)) in dests {
                let oldest_ms = if oldest == i64::MAX { 0 } else { oldest };
                let env = Envelope::Input { topic: topic.clone(), partition: key.1, oldest_ms, items };
                out.push(OutRecord::cmd(dest, &env));
            }
            commit.add_partition_offset(topic, key.1, Offset::Offset(slice.next_offset)).map_err(StreamError::kafka("offset list"))?;
        }
        out.extend(rejects);
        let td = Instant::now();
        ph.add("ingest_parse", (td - t0).saturating_sub(polling));
        self.sender.deliver(&out)?;
        let tc = Instant::now();
        ph.add("ingest_deliver", tc - td);
        self.metrics.count_out(&out);
        tracing::debug!(records = n, envelopes_and_rejects = out.len(), deliver_ms = (tc - td).as_millis() as u64, "ingest batch routed");
        let committed = self.consumer.commit(&commit, CommitMode::Sync);
        ph.add("ingest_commit", tc.elapsed());
        if let Err(e) = committed {
            // A rebalance took the partitions: their new owner re-reads the
            // batch and the core drops what it already applied.
            tracing::warn!(error = %e, "ingest offset commit failed; the batch will be re-read");
        }
        Ok(())
    }
}

/// A rejected input record: its value (the original bytes, in the output
/// format: [`OutFormat::reject`]), the reason and the source position in
/// headers.
pub fn reject(topic: &str, partition: i32, offset: i64, code: &str, message: &str, value: Vec<u8>) -> OutRecord {
    OutRecord {
        dest: Dest::Rejects,
        partition: None,
        key: Some(format!("{topic}/{partition}/{offset}").into_bytes()),
        value: Some(value),
        headers: vec![
            ("idgraph.reason".into(), code.as_bytes().to_vec()),
            ("idgraph.message".into(), message.as_bytes().to_vec()),
            ("idgraph.source.topic".into(), topic.as_bytes().to_vec()),
            ("idgraph.source.partition".into(), partition.to_string().into_bytes()),
            ("idgraph.source.offset".into(), offset.to_string().into_bytes()),
        ],
    }
}
