//! The outbox: every record a batch produces is written to RocksDB in the
//! batch's own `WriteBatch`, then produced by an idempotent producer; the
//! drained entries are deleted in the next write. A restart drops what is
//! left (ADR 0004): those batches are redone by whoever restores their
//! partitions, and producing them late could put older profile versions
//! after newer ones another instance published meanwhile.

use crate::client;
use crate::error::StreamError;
use crate::topics::Topics;
use idgraph_state::meta_key;
use idgraph_store::{Batch, Cf, Store};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where an outbox record goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Dest {
    Cmd,
    Changelog,
    Profiles,
    Lifecycle,
    Consent,
    Rejects,
}

impl Dest {
    pub const ALL: [Dest; 6] = [Dest::Cmd, Dest::Changelog, Dest::Profiles, Dest::Lifecycle, Dest::Consent, Dest::Rejects];

    /// The topic's role, as in metric labels (`cmd`, `profiles`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Dest::Cmd => "cmd",
            Dest::Changelog => "changelog",
            Dest::Profiles => "profiles",
            Dest::Lifecycle => "lifecycle",
            Dest::Consent => "consent",
            Dest::Rejects => "rejects",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutRecord {
    pub dest: Dest,
    /// Explicit partition; `None` partitions by key.
    pub partition: Option<i32>,
    pub key: Option<Vec<u8>>,
    /// `None` is a tombstone.
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl OutRecord {
    /// An envelope for partition `partition` of `idgraph.cmd`.
    pub fn cmd(partition: u16, env: &crate::envelope::Envelope) -> Self {
        Self { dest: Dest::Cmd, partition: Some(partition as i32), key: None, value: Some(crate::envelope::encode(env)), headers: vec![] }
    }
}

const PREFIX: &str = "outbox/";

fn entry_key(seq: u64) -> Vec<u8> {
    let mut k = meta_key(PREFIX);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The persisted outbox: sequence numbers, pending deletions.
#[derive(Debug)]
pub struct Outbox {
    next: u64,
    to_delete: Vec<u64>,
}

impl Outbox {
    /// Reads what a previous run left (to be drained before anything else).
    pub fn open(store: &dyn Store) -> Result<(Self, Vec<(u64, OutRecord)>), StreamError> {
        let mut left = Vec::new();
        let mut bad = None;
        store.scan(Cf::Meta, &meta_key(PREFIX), &mut |k, v| {
            let seq = k[k.len() - 8..].try_into().map(u64::from_be_bytes).unwrap_or(0);
            match idgraph_core::record::decode::<OutRecord>(v) {
                Ok(r) => left.push((seq, r)),
                Err(e) => bad = Some(e.to_string()),
            }
            true
        })?;
        if let Some(reason) = bad {
            return Err(idgraph_state::StateError::Corrupt { what: "outbox", reason }.into());
        }
        let next = left.last().map_or(0, |(s, _)| s + 1);
        // Changelog leftovers are deleted with the next write; the rest
        // only once the caller has delivered them (`delivered`).
        let (changelog, left): (Vec<_>, Vec<_>) = left.into_iter().partition(|(_, r)| r.dest == Dest::Changelog);
        Ok((Self { next, to_delete: changelog.into_iter().map(|(s, _)| s).collect() }, left))
    }

    /// Adds the records to `batch` and returns them numbered.
    pub fn stage(&mut self, batch: &mut Batch, recs: Vec<OutRecord>) -> Vec<(u64, OutRecord)> {
        for s in self.to_delete.drain(..) {
            batch.delete(Cf::Meta, entry_key(s));
        }
        recs.into_iter()
            .map(|r| {
                let s = self.next;
                self.next += 1;
                batch.put(Cf::Meta, entry_key(s), idgraph_core::record::encode(&r));
                (s, r)
            })
            .collect()
    }

    /// The records were delivered: delete them with the next write.
    pub fn delivered(&mut self, seqs: impl IntoIterator<Item = u64>) {
        self.to_delete.extend(seqs);
    }

    /// Deletes delivered records now (at shutdown).
    pub fn flush_deletes(&mut self, store: &dyn Store) -> Result<(), StreamError> {
        if self.to_delete.is_empty() {
            return Ok(());
        }
        let mut b = Batch::default();
        self.stage(&mut b, Vec::new());
        store.write(b)?;
        Ok(())
    }
}

/// Counts failed deliveries (after librdkafka's own retries) and keeps
/// the offsets of tracked records.
#[derive(Debug, Default)]
pub struct DeliveryCheck {
    failed: AtomicU64,
    first: Mutex<Option<String>>,
    /// (index in the delivered slice, offset) of tracked records.
    offsets: Mutex<Vec<(usize, i64)>>,
}

impl ClientContext for DeliveryCheck {}

impl ProducerContext for DeliveryCheck {
    /// 0: not tracked; otherwise the record's index + 1.
    type DeliveryOpaque = usize;
    fn delivery(&self, r: &DeliveryResult<'_>, tracked: usize) {
        match r {
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut f) = self.first.lock() {
                    f.get_or_insert_with(|| e.to_string());
                }
            }
            Ok(m) if tracked > 0 => {
                if let Ok(mut o) = self.offsets.lock() {
                    o.push((tracked - 1, rdkafka::Message::offset(m)));
                }
            }
            Ok(_) => {}
        }
    }
}

/// An idempotent producer that sends batches of records and waits for them.
pub struct Sender {
    producer: BaseProducer<DeliveryCheck>,
    topics: Topics,
    pub sent: Arc<AtomicU64>,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender").finish_non_exhaustive()
    }
}

impl Sender {
    pub fn new(brokers: &str, topics: Topics) -> Result<Self, StreamError> {
        let producer = client::producer(brokers).create_with_context(DeliveryCheck::default()).map_err(StreamError::kafka("producer"))?;
        Ok(Self { producer, topics, sent: Arc::default() })
    }

    fn topic(&self, d: Dest) -> &str {
        match d {
            Dest::Cmd => &self.topics.cmd,
            Dest::Changelog => &self.topics.changelog,
            Dest::Profiles => &self.topics.profiles,
            Dest::Lifecycle => &self.topics.lifecycle,
            Dest::Consent => &self.topics.consent,
            Dest::Rejects => &self.topics.rejects,
        }
    }

    /// Enqueues one record, waiting while the local queue is full.
    pub fn send(&self, r: &OutRecord) -> Result<(), StreamError> {
        self.send_tracked(r, 0)
    }

    /// As [`Sender::send`]; `tracked` > 0 keeps the record's offset.
    fn send_tracked(&self, r: &OutRecord, tracked: usize) -> Result<(), StreamError> {
        let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
        for (k, v) in &r.headers {
            headers = headers.insert(Header { key: k, value: Some(v) });
        }
        let mut rec: BaseRecord<'_, [u8], [u8], usize> = BaseRecord::with_opaque_to(self.topic(r.dest), tracked).headers(headers);
        if let Some(p) = r.partition {
            rec = rec.partition(p);
        }
        if let Some(k) = &r.key {
            rec = rec.key(k.as_slice());
        }
        if let Some(v) = &r.value {
            rec = rec.payload(v.as_slice());
        }
        loop {
            match self.producer.send(rec) {
                Ok(()) => {
                    self.sent.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    rec = back;
                    self.producer.poll(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(StreamError::Kafka { what: format!("produce to {}", self.topic(r.dest)), source: e }),
            }
        }
    }

    /// Serves delivery reports without blocking.
    pub fn poll(&self) {
        self.producer.poll(Duration::ZERO);
    }

    /// Waits until every enqueued record is acknowledged; fails if any was
    /// not (the caller retries the whole set: duplicates are harmless).
    pub fn flush(&self) -> Result<(), StreamError> {
        // Not `Producer::flush`: it sleeps up to 100 ms per round after the
        // delivery reports were served, which put 100 ms on every batch.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while self.producer.in_flight_count() > 0 {
            if std::time::Instant::now() >= deadline {
                return Err(StreamError::Kafka {
                    what: "flush producer".into(),
                    source: KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut),
                });
            }
            self.producer.poll(Duration::from_millis(1));
        }
        let failed = self.producer.context().failed.swap(0, Ordering::Relaxed);
        if failed > 0 {
            let first = self.producer.context().first.lock().ok().and_then(|mut f| f.take()).unwrap_or_default();
            return Err(StreamError::Delivery { failed, first });
        }
        Ok(())
    }

    /// Sends and waits for all of `recs`, retrying a failed attempt.
    pub fn deliver(&self, recs: &[(u64, OutRecord)]) -> Result<(), StreamError> {
        self.deliver_tracked(recs, |_| false).map(drop)
    }

    /// As [`Sender::deliver`]; returns (index, offset) of the records
    /// `track` selects.
    pub fn deliver_tracked(&self, recs: &[(u64, OutRecord)], track: impl Fn(&OutRecord) -> bool) -> Result<Vec<(usize, i64)>, StreamError> {
        let mut attempt = 0;
        loop {
            if let Ok(mut o) = self.producer.context().offsets.lock() {
                o.clear();
            }
            let r = recs
                .iter()
                .enumerate()
                .try_for_each(|(i, (_, r))| self.send_tracked(r, if track(r) { i + 1 } else { 0 }))
                .and_then(|()| self.flush());
            match r {
                Ok(()) => {
                    let mut o = self.producer.context().offsets.lock().map(|mut o| std::mem::take(&mut *o)).unwrap_or_default();
                    o.sort_unstable();
                    return Ok(o);
                }
                Err(e) if e.retryable() && attempt < 5 => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "outbox delivery failed; retrying");
                    std::thread::sleep(Duration::from_millis(200 * attempt));
                }
                Err(e) => return Err(e),
            }
        }
    }
}
