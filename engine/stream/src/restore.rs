//! Restoring core partitions before they are resumed (ADR 0004).
//!
//! A partition whose local state is exactly the state of its last
//! delivered changelog marker ([`ClPos`] names the same batch as the local
//! [`PartMeta`]) continues from that marker: the record there must be the
//! marker itself, then every later batch of the changelog is applied (work
//! other instances did meanwhile). So does a partition whose local state is
//! one of this process's later batches (the usual state after a kill -9
//! under load: a batch is written before its markers land, and its
//! changelog position is stored only when the next batch collects them),
//! on one condition: the marker of that later batch must chain in the read,
//! so the local state is again a state of the chain; otherwise the
//! partition is rebuilt. Any other partition is cleared locally and rebuilt
//! from the start of its changelog. Both go through one [`Chain`] per
//! partition, so only whole, chained batches are applied.
//!
//! The end of a changelog partition is its high watermark, then a quiet
//! spell ([`QUIET`]): tansu understates the watermark (its last batch's
//! base offset + 1). Stopping early is safe (the state restored is still
//! one the partition had; processing on from there repeats work), reading
//! on is only slower.

use crate::changelog::{Chain, Marker, Step, BATCH_HEADER};
use crate::client::{self, Cluster};
use crate::error::StreamError;
use crate::meta::{clpos_key, part_meta_key, partition_prefixes, BatchId, ClPos, PartMeta};
use crate::metrics::Metrics;
use crate::resume::{Resume, Verdict};
use idgraph_core::record::{decode, encode};
use idgraph_state::{KnownKeys, StateError};
use idgraph_store::{Batch, Cf, Store};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How long the changelog must stay silent past its high watermark.
pub const QUIET: Duration = Duration::from_millis(300);
/// How long the restore follows a changelog that keeps growing past its
/// high watermark.
const FOLLOW: Duration = Duration::from_secs(2);
/// How long a continuing partition may take to show its marker before it
/// is rebuilt from the start instead.
const MARKER_WAIT: Duration = Duration::from_secs(5);
/// Restored writes per RocksDB write.
const CHUNK: usize = 20_000;

/// Where a partition restores from.
#[derive(Debug)]
enum Mode {
    /// From the local state: the record at `pos.offset` must be its
    /// marker. `ahead`: the local state is that of a later batch of this
    /// process, whose marker must chain in the read (the chain then starts
    /// from the marker at `pos`, not from the local meta).
    Continue { pos: ClPos, seen: bool, ahead: Option<BatchId> },
    /// From the start of the changelog, over a cleared local partition.
    Full,
}

#[derive(Debug)]
struct Part {
    p: u16,
    mode: Mode,
    chain: Chain,
    hi: i64,
    next: i64,
    /// Offset of the last marker applied.
    marker_at: Option<ClPos>,
    records: u64,
    /// The local state's marker was not found: rebuild instead.
    gave_up: bool,
    /// The marker of `Mode::Continue`'s `ahead` batch chained.
    ahead_applied: bool,
}

impl Part {
    fn new(p: u16, mode: Mode, chain: Chain, marker_at: Option<ClPos>) -> Self {
        Self { p, mode, chain, hi: 0, next: 0, marker_at, records: 0, gave_up: false, ahead_applied: false }
    }

    /// The local state cannot be continued from: the partition is rebuilt
    /// from the start of its changelog (`offset`: the record that said so).
    fn give_up(&mut self, offset: Option<i64>, why: &'static str) {
        tracing::warn!(partition = self.p, offset, reason = why, "cannot continue from the local state; rebuilding the partition");
        self.gave_up = true;
    }

    fn caught_up(&self) -> bool {
        self.gave_up || (self.next >= self.hi && !matches!(self.mode, Mode::Continue { seen: false, .. }))
    }
}

/// How long the changelog may stay silent before an unfinished restore
/// fails.
const STALL: Duration = Duration::from_secs(30);

/// A restored partition.
#[derive(Debug)]
pub struct Restored {
    pub p: u16,
    pub meta: PartMeta,
    /// The changelog offset after the last record read: where the next
    /// record of this partition's changelog lands if nobody else writes.
    pub end: i64,
    /// The keys whose last record on the changelog is not their restored
    /// value (the claim writes their restored values:
    /// [`Chain::unapplied_keys`]).
    pub unapplied: Vec<(Cf, Vec<u8>)>,
}

/// Reads changelog partitions (no consumer group: assigned explicitly).
pub struct Restorer {
    consumer: BaseConsumer,
    topic: String,
    partitions: u16,
}

impl std::fmt::Debug for Restorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Restorer").field("topic", &self.topic).finish_non_exhaustive()
    }
}

fn read<T: for<'de> serde::Deserialize<'de>>(store: &dyn Store, key: &[u8], what: &'static str) -> Result<Option<T>, StreamError> {
    match store.get(Cf::Meta, key)? {
        None => Ok(None),
        Some(b) => decode(&b).map(Some).map_err(|e| StateError::Corrupt { what, reason: e.to_string() }.into()),
    }
}

/// Clears partition `p`'s local state (its records and meta).
fn clear(store: &dyn Store, p: u16) -> Result<(), StreamError> {
    let mut b = Batch::default();
    for (cf, prefix) in partition_prefixes(p) {
        b.delete_prefix(cf, prefix);
    }
    store.write(b)?;
    Ok(())
}

impl Restorer {
    pub fn new(cluster: &Cluster, group: &str, topic: &str, partitions: u16) -> Result<Self, StreamError> {
        let consumer: BaseConsumer =
            client::consumer(cluster, &format!("{group}-restore")).create().map_err(StreamError::kafka("changelog consumer"))?;
        Ok(Self { consumer, topic: topic.to_string(), partitions })
    }

    /// Restores `ps` into `store` and returns each partition's meta.
    /// Restores `ps` into `store`; `rebuild` forces every partition to be
    /// rebuilt from the start of its changelog. Returns each partition's
    /// meta and the changelog offset after the last record read.
    pub fn restore(
        &self,
        store: &dyn Store,
        known: &mut KnownKeys,
        ps: &[u16],
        rebuild_all: bool,
        metrics: &Metrics,
    ) -> Result<Vec<Restored>, StreamError> {
        let t0 = Instant::now();
        let mut parts = Vec::with_capacity(ps.len());
        let mut rebuild = Vec::new();
        for &p in ps {
            let meta: Option<PartMeta> = read(store, &part_meta_key(p), "stream meta")?;
            let pos: Option<ClPos> = read(store, &clpos_key(p), "changelog position")?;
            match (meta, pos) {
                (Some(m), Some(pos)) if pos.batch == m.batch && !rebuild_all => {
                    parts.push(Part::new(p, Mode::Continue { pos, seen: false, ahead: None }, Chain::from(m), Some(pos)))
                }
                (Some(m), Some(pos)) if m.batch.token == pos.batch.token && m.batch.seq > pos.batch.seq && !rebuild_all => {
                    let mode = Mode::Continue { pos, seen: false, ahead: Some(m.batch) };
                    parts.push(Part::new(p, mode, Chain::default(), Some(pos)))
                }
                _ => rebuild.push(p),
            }
        }
        let mut done = self.read(store, known, parts, metrics)?;
        // Partitions whose marker was not where the local state said.
        let retry: Vec<u16> = done.iter().filter(|(_, m)| m.is_none()).map(|(p, _)| *p).collect();
        done.retain(|(_, m)| m.is_some());
        rebuild.extend(retry);
        if !rebuild.is_empty() {
            let mut parts = Vec::with_capacity(rebuild.len());
            for p in rebuild {
                clear(store, p)?;
                parts.push(Part::new(p, Mode::Full, Chain::default(), None));
            }
            done.extend(self.read(store, known, parts, metrics)?);
        }
        let out: Vec<Restored> = done.into_iter().filter_map(|(_, r)| r).collect();
        metrics.restore_seconds.observe(t0.elapsed().as_secs_f64());
        Ok(out)
    }

    /// Reads the partitions to their end; `None` for a continuing
    /// partition whose marker was missing (to be rebuilt).
    fn read(
        &self,
        store: &dyn Store,
        known: &mut KnownKeys,
        mut parts: Vec<Part>,
        metrics: &Metrics,
    ) -> Result<Vec<(u16, Option<Restored>)>, StreamError> {
        if parts.is_empty() {
            return Ok(Vec::new());
        }
        let mut tpl = TopicPartitionList::new();
        // Only the start point is probed: gaps are compaction's, and this
        // consumer's fetches are never restarted by a rebalance.
        let mut resume = Resume::default();
        resume.gaps_ok = true;
        for part in &mut parts {
            let (lo, hi) = self
                .consumer
                .fetch_watermarks(&self.topic, part.p as i32, Duration::from_secs(10))
                .map_err(StreamError::kafka("changelog watermarks"))?;
            part.hi = hi;
            let start = match &part.mode {
                Mode::Continue { pos, .. } => {
                    resume.expect(&self.topic, part.p as i32, pos.offset);
                    part.next = pos.offset;
                    Offset::Offset(pos.offset)
                }
                Mode::Full => {
                    part.next = lo;
                    Offset::Beginning
                }
            };
            tpl.add_partition_offset(&self.topic, part.p as i32, start).map_err(StreamError::kafka("offset list"))?;
            metrics.partitions_restoring.fetch_add(1, Ordering::Relaxed);
            metrics.restores.add(if matches!(part.mode, Mode::Full) { "rebuild" } else { "continue" }, 1);
        }
        self.consumer.assign(&tpl).map_err(StreamError::kafka("assign changelog partitions"))?;
        let started = Instant::now();
        let mut quiet_since = Instant::now();
        let mut caught_up_at: Option<Instant> = None;
        let mut writes = Batch::default();
        // A continuing partition's restored records written before the end
        // (in chunks) go with the deletion of its changelog position: a
        // crash mid-restore must not leave a local state past its meta that
        // a later restore, stopping earlier, would continue from.
        let continuing: Vec<u16> = parts.iter().filter(|x| matches!(x.mode, Mode::Continue { .. })).map(|x| x.p).collect();
        loop {
            resume.tick(&self.consumer);
            let all_caught_up = parts.iter().all(Part::caught_up);
            if all_caught_up && caught_up_at.is_none() {
                caught_up_at = Some(Instant::now());
            }
            // Past the watermark, stop at the first quiet spell, or after
            // FOLLOW if something keeps writing (another instance still
            // runs the partition: the claim will say so).
            if all_caught_up && (quiet_since.elapsed() >= QUIET || caught_up_at.is_some_and(|t| t.elapsed() >= FOLLOW)) {
                break;
            }
            if !all_caught_up && quiet_since.elapsed() >= STALL {
                let behind: Vec<(u16, i64, i64)> = parts.iter().filter(|x| !x.caught_up()).map(|x| (x.p, x.next, x.hi)).collect();
                return Err(StreamError::Internal(format!(
                    "restore of {} stalled: no record for {} s; (partition, next offset, high watermark): {behind:?}",
                    self.topic,
                    STALL.as_secs()
                )));
            }
            for part in &mut parts {
                if !part.gave_up && matches!(part.mode, Mode::Continue { seen: false, .. }) && started.elapsed() >= MARKER_WAIT {
                    part.give_up(None, "the local state's changelog marker did not arrive");
                }
            }
            let Some(m) = self.consumer.poll(Duration::from_millis(50)) else { continue };
            let m = m.map_err(StreamError::kafka("read the changelog"))?;
            quiet_since = Instant::now();
            let Some(part) = parts.iter_mut().find(|x| x.p as i32 == m.partition()) else { continue };
            if part.gave_up || resume.check(&self.consumer, &self.topic, m.partition(), m.offset()) == Verdict::Skip {
                continue;
            }
            part.next = m.offset() + 1;
            part.records += 1;
            metrics.restored_records.fetch_add(1, Ordering::Relaxed);
            let key = m.key().unwrap_or_default();
            let header = m.headers().and_then(|h| h.iter().find(|h| h.key == BATCH_HEADER).and_then(|h| h.value));
            if let Mode::Continue { pos, seen, ahead } = &mut part.mode {
                if !*seen {
                    let is_marker =
                        m.offset() == pos.offset && crate::changelog::is_marker(key) && header == Some(&pos.batch.to_bytes()[..]);
                    if !is_marker {
                        part.give_up(Some(m.offset()), "the changelog does not hold the local state's marker at its position");
                        continue;
                    }
                    if ahead.is_some() {
                        // The chain starts where the marker says the
                        // partition stood, not where the local state is.
                        match m.payload().map(decode::<Marker>) {
                            Some(Ok(marker)) => part.chain = Chain::from(marker.meta),
                            _ => {
                                part.give_up(Some(m.offset()), "the marker at the local changelog position does not decode");
                                continue;
                            }
                        }
                    }
                    *seen = true;
                    continue;
                }
            }
            let step = match part.chain.push(m.offset(), key, m.payload(), header) {
                Ok(step) => step,
                Err(e) => {
                    // Not written by idgraph: skipped (it never chains).
                    tracing::warn!(partition = part.p, topic = %self.topic, error = %e, "foreign record on the changelog; skipped");
                    metrics.rejects.add("foreign_changelog_record", 1);
                    continue;
                }
            };
            if let Step::Apply(ops, meta) = step {
                if matches!(part.mode, Mode::Continue { ahead: Some(b), .. } if b == meta.batch) {
                    part.ahead_applied = true;
                }
                for (cf, k, v) in ops {
                    let k = idgraph_state::current_key(cf, k);
                    match v {
                        Some(v) => {
                            known.insert(cf, &k);
                            writes.put(cf, k, v);
                        }
                        None => writes.delete(cf, k),
                    }
                }
                part.marker_at = Some(ClPos { batch: meta.batch, offset: m.offset() });
                if writes.len() >= CHUNK {
                    for &p in &continuing {
                        writes.delete(Cf::Meta, clpos_key(p));
                    }
                    store.write(std::mem::take(&mut writes))?;
                }
            }
        }
        self.consumer.unassign().map_err(StreamError::kafka("unassign changelog partitions"))?;
        let mut out = Vec::with_capacity(parts.len());
        for mut part in parts {
            metrics.partitions_restoring.fetch_sub(1, Ordering::Relaxed);
            let ahead = matches!(part.mode, Mode::Continue { ahead: Some(_), .. });
            if ahead && !part.gave_up && !part.ahead_applied {
                // Its last batch never landed whole: the local state holds
                // writes no marker vouches for.
                part.give_up(None, "the local state's last batch has no marker on the changelog");
            }
            if part.gave_up {
                out.push((part.p, None));
                continue;
            }
            let meta = part.chain.at.clone().unwrap_or_else(|| PartMeta::new(self.partitions));
            writes.put(Cf::Meta, part_meta_key(part.p), encode(&meta));
            match part.marker_at {
                Some(pos) => writes.put(Cf::Meta, clpos_key(part.p), encode(&pos)),
                None => writes.delete(Cf::Meta, clpos_key(part.p)),
            }
            let unapplied = part.chain.unapplied_keys();
            tracing::info!(
                partition = part.p,
                records = part.records,
                batches = part.chain.applied_batches,
                dropped_batches = part.chain.dropped_batches,
                unapplied_keys = unapplied.len(),
                local_ahead = ahead,
                cmd_offset = meta.cmd_offset,
                read_to = part.next,
                high_watermark = part.hi,
                "partition restored"
            );
            out.push((part.p, Some(Restored { p: part.p, meta, end: part.next, unapplied })));
        }
        store.write(writes)?;
        Ok(out)
    }
}
