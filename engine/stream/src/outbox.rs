//! The records a batch produces ([`OutRecord`]: commands, outputs,
//! changelog) and the idempotent producer that delivers them ([`Sender`]).
//!
//! They are not persisted (ADR 0004, replacing ADR 0003's persisted
//! outbox): a batch's records are a deterministic function of the restored
//! state and the `idgraph.cmd` records, its changelog markers are produced
//! only after everything else is acknowledged, and a batch whose markers
//! did not land is redone by whoever restores its partitions.

use crate::client::{self, Cluster};
use crate::config::Compression;
use crate::error::StreamError;
use crate::topics::Topics;
use idgraph_state::meta_key;
use idgraph_store::{Batch, Cf, Store};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

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

/// How many of `recs` go to each [`Dest`] (by its index).
pub fn count_by_dest<'a>(recs: impl IntoIterator<Item = &'a OutRecord>) -> [u64; Dest::ALL.len()] {
    let mut n = [0u64; Dest::ALL.len()];
    for r in recs {
        n[r.dest as usize] += 1;
    }
    n
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

/// Counts delivery reports (and, of them, failures after librdkafka's own
/// retries), keeps the offsets of tracked records, and wakes a waiting
/// [`Sender::flush`] when the reports it waits for are in.
#[derive(Debug)]
pub struct DeliveryCheck {
    failed: AtomicU64,
    first: Mutex<Option<String>>,
    /// (index in the delivered slice, offset) of tracked records.
    offsets: Mutex<Vec<(usize, i64)>>,
    /// Reports served so far, successful or not: one per record sent.
    reported: AtomicU64,
    /// The count a flush waits for (`u64::MAX`: none waits).
    want: AtomicU64,
    lock: Mutex<()>,
    progress: Condvar,
}

impl Default for DeliveryCheck {
    fn default() -> Self {
        Self {
            failed: AtomicU64::new(0),
            first: Mutex::new(None),
            offsets: Mutex::new(Vec::new()),
            reported: AtomicU64::new(0),
            want: AtomicU64::new(u64::MAX),
            lock: Mutex::new(()),
            progress: Condvar::new(),
        }
    }
}

impl DeliveryCheck {
    /// Blocks until `target` reports are in, or `deadline`; true when they are.
    fn wait_for(&self, target: u64, deadline: Instant) -> bool {
        // Sequentially consistent on both sides (store `want`, load
        // `reported` here; add to `reported`, load `want` in `delivery`):
        // either the reporter sees the wish, or this thread sees the count.
        self.want.store(target, Ordering::SeqCst);
        let Ok(mut g) = self.lock.lock() else { return false };
        let done = loop {
            if self.reported.load(Ordering::SeqCst) >= target {
                break true;
            }
            let now = Instant::now();
            if now >= deadline {
                break false;
            }
            // The timeout only bounds the wait; a report wakes it.
            match self.progress.wait_timeout(g, (deadline - now).min(Duration::from_millis(100))) {
                Ok((next, _)) => g = next,
                Err(_) => return false,
            }
        };
        self.want.store(u64::MAX, Ordering::SeqCst);
        done
    }

    /// Counts one report and wakes the waiter once its count is reached.
    fn reported_one(&self) {
        let n = self.reported.fetch_add(1, Ordering::SeqCst) + 1;
        if n >= self.want.load(Ordering::SeqCst) {
            // Taking the lock orders this wake-up after the waiter's check.
            drop(self.lock.lock());
            self.progress.notify_all();
        }
    }
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
        self.reported_one();
    }
}

/// An idempotent producer that sends batches of records and waits for them.
///
/// Delivery reports are served by the producer's own polling thread; the
/// caller sleeps until they are in. (Waiting by polling on the caller's
/// thread spun: rdkafka's poll serves events until its deadline, and a
/// deadline under a millisecond polls with a zero timeout; the core's
/// thread spent its whole delivery phase on a core the broker and
/// librdkafka's own threads needed.)
pub struct Sender {
    producer: ThreadedProducer<DeliveryCheck>,
    topics: Topics,
    /// Records handed to librdkafka so far: each gets one report.
    sent: AtomicU64,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender").finish_non_exhaustive()
    }
}

impl Sender {
    pub fn new(cluster: &Cluster, compression: Compression, topics: Topics) -> Result<Self, StreamError> {
        let producer: ThreadedProducer<DeliveryCheck> =
            client::producer(cluster, compression).create_with_context(DeliveryCheck::default()).map_err(StreamError::kafka("producer"))?;
        client::warm_up(producer.client(), topics.of(Dest::Cmd));
        Ok(Self { producer, topics, sent: AtomicU64::new(0) })
    }

    fn topic(&self, d: Dest) -> &str {
        self.topics.of(d)
    }

    /// Enqueues one record, waiting while the local queue is full;
    /// `tracked` > 0 keeps the record's offset.
    fn send(&self, r: &OutRecord, tracked: usize) -> Result<(), StreamError> {
        let mut rec: BaseRecord<'_, [u8], [u8], usize> = BaseRecord::with_opaque_to(self.topic(r.dest), tracked);
        // Most records have none: no header list is allocated for them
        // (librdkafka allocates and frees one per record otherwise).
        if !r.headers.is_empty() {
            let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
            for (k, v) in &r.headers {
                headers = headers.insert(Header { key: k, value: Some(v) });
            }
            rec = rec.headers(headers);
        }
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
                    // The polling thread serves reports, which frees room.
                    rec = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => return Err(StreamError::Kafka { what: format!("produce to {}", self.topic(r.dest)), err: e }),
            }
        }
    }

    /// Waits until every enqueued record is acknowledged; fails if any was
    /// not (the caller retries the whole set: duplicates are harmless).
    pub fn flush(&self) -> Result<(), StreamError> {
        let target = self.sent.load(Ordering::Relaxed);
        if !self.producer.context().wait_for(target, Instant::now() + Duration::from_secs(60)) {
            return Err(StreamError::Kafka { what: "flush producer".into(), err: KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut) });
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
    fn a_flush_wakes_when_its_reports_are_in_and_not_before() {
        let check = std::sync::Arc::new(DeliveryCheck::default());
        // Nothing reported: the wait runs out.
        let t = Instant::now();
        assert!(!check.wait_for(1, Instant::now() + Duration::from_millis(50)));
        assert!(t.elapsed() >= Duration::from_millis(50));
        // Reports from another thread, slower than the waiter starts.
        let c = check.clone();
        let reporter = std::thread::spawn(move || {
            for _ in 0..1000 {
                c.reported_one();
                if c.reported.load(Ordering::Relaxed) % 100 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        });
        assert!(check.wait_for(1000, Instant::now() + Duration::from_secs(30)));
        assert!(check.reported.load(Ordering::SeqCst) >= 1000);
        reporter.join().unwrap();
        // Already there: no wait.
        let t = Instant::now();
        assert!(check.wait_for(1000, Instant::now() + Duration::from_secs(30)));
        assert!(t.elapsed() < Duration::from_secs(1));
        assert!(!check.wait_for(1001, Instant::now() + Duration::from_millis(10)));
    }

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
