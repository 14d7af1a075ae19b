//! The records a batch produces ([`OutRecord`]: commands, outputs,
//! changelog) and the idempotent producer that delivers them ([`Sender`]).
//!
//! They are not persisted (ADR 0004, replacing ADR 0003's persisted
//! outbox): a batch's records are a deterministic function of the restored
//! state and the `idgraph.cmd` records, its changelog markers are produced
//! only after everything else is acknowledged, and a batch whose markers
//! did not land is redone by whoever restores its partitions.

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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Where a produced record goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

#[derive(Debug, Clone, PartialEq)]
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

/// Deletes what an older version of idgraph persisted as its outbox (rows
/// under `0xFFFF, "outbox/"`); returns how many there were. Undelivered
/// records are never produced late (ADR 0004): their batches are redone.
pub fn drop_leftovers(store: &dyn Store) -> Result<usize, StreamError> {
    let prefix = meta_key(PREFIX);
    let mut n = 0;
    store.scan(Cf::Meta, &prefix, &mut |_, _| {
        n += 1;
        true
    })?;
    if n > 0 {
        let mut b = Batch::default();
        b.delete_prefix(Cf::Meta, prefix);
        store.write(b)?;
    }
    Ok(n)
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
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender").finish_non_exhaustive()
    }
}

impl Sender {
    pub fn new(brokers: &str, topics: Topics) -> Result<Self, StreamError> {
        let producer = client::producer(brokers).create_with_context(DeliveryCheck::default()).map_err(StreamError::kafka("producer"))?;
        Ok(Self { producer, topics })
    }

    fn topic(&self, d: Dest) -> &str {
        self.topics.of(d)
    }

    /// Enqueues one record, waiting while the local queue is full;
    /// `tracked` > 0 keeps the record's offset.
    fn send(&self, r: &OutRecord, tracked: usize) -> Result<(), StreamError> {
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
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    rec = back;
                    self.producer.poll(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(StreamError::Kafka { what: format!("produce to {}", self.topic(r.dest)), source: e }),
            }
        }
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
    pub fn deliver(&self, recs: &[OutRecord]) -> Result<(), StreamError> {
        self.deliver_tracked(recs, |_| false).map(drop)
    }

    /// As [`Sender::deliver`]; returns (index, offset) of the records
    /// `track` selects.
    pub fn deliver_tracked(&self, recs: &[OutRecord], track: impl Fn(&OutRecord) -> bool) -> Result<Vec<(usize, i64)>, StreamError> {
        let mut attempt = 0;
        loop {
            if let Ok(mut o) = self.producer.context().offsets.lock() {
                o.clear();
            }
            let r =
                recs.iter().enumerate().try_for_each(|(i, r)| self.send(r, if track(r) { i + 1 } else { 0 })).and_then(|()| self.flush());
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use idgraph_store::MemStore;

    #[test]
    fn an_older_versions_outbox_is_dropped_and_nothing_else() {
        let s = MemStore::new();
        let mut b = Batch::default();
        for seq in [1u64, 2] {
            let mut k = meta_key(PREFIX);
            k.extend_from_slice(&seq.to_be_bytes());
            b.put(Cf::Meta, k, vec![1]);
        }
        b.put(Cf::Meta, meta_key("partitions"), vec![4]);
        s.write(b).unwrap();
        assert_eq!(drop_leftovers(&s).unwrap(), 2);
        assert_eq!(drop_leftovers(&s).unwrap(), 0);
        assert_eq!(s.get(Cf::Meta, &meta_key("partitions")).unwrap(), Some(vec![4]));
    }
}
