//! The core's batch loop over `idgraph.cmd` (ADR 0003, ADR 0004).
//!
//! The worker owns the core partitions its consumer group assigns
//! (`<group-id>-core`); each is restored ([`crate::restore`]) before it is
//! resumed at its own position. Per batch: take up to `max_batch_records`
//! envelopes, drop what each partition has already applied (input
//! offsets, sender sequences), run the rest through the partitions, then
//! commit the dirty records and the stream meta of each partition the batch
//! advanced in one RocksDB write, then hand the batch's records
//! (commands, profiles, lifecycle, consent, the changelog copy of the
//! state records, and last one changelog marker per advanced partition)
//! to the delivery thread ([`crate::tail`]), which has them acknowledged
//! while the next batch is polled and applied. The next batch collects
//! that result before it writes anything (ADR 0009).

use crate::changelog;
use crate::client;
use crate::config::EngineConfig;
use crate::envelope::{self, Envelope};
use crate::error::StreamError;
use crate::lag::LagProbe;
use crate::meta::{BatchId, PartMeta};
use crate::metrics::{Metrics, Origins};
use crate::out_format::OutFormat;
use crate::outbox::{Dest, OutRecord, Sender};
use crate::rebalance::{Change, CoreContext};
use crate::restore::Restorer;
use crate::resume::{Resume, Verdict};
use crate::tail::{InFlight, Job, Tail};
use crate::topics::Topics;
use crate::window::Window;
use idgraph_core::cluster::prefetch_owners;
use idgraph_core::command::{Command, Target};
use idgraph_core::golden::{self, ProfileOutput};
use idgraph_core::ident::IdentKey;
use idgraph_core::partition::{Effects, Loader, Partition, Stats};
use idgraph_state::{check_partitions, KnownKeys, StoreLoader};
use idgraph_store::{Batch, Cf, RocksOptions, RocksStore, Store};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;

use rustc_hash::FxHashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use crate::meta::part_meta_key;

/// Keys the known-keys filter is first sized for (at least; twice the keys
/// already stored), before it grows.
const KNOWN_KEYS_MIN_CAPACITY: u64 = 4_000_000;

/// A core partition's standing in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Own {
    No,
    /// Restored and consuming.
    Active,
    /// Assigned, but another instance writes its changelog: paused, tried
    /// again at `retry_at` (ADR 0004, fencing).
    Standby {
        retry_at: Instant,
    },
}

pub struct Worker {
    pub(crate) cfg: EngineConfig,
    pub(crate) store: RocksStore,
    pub(crate) known: KnownKeys,
    pub(crate) parts: Vec<Partition>,
    pub(crate) meta: Vec<PartMeta>,
    pub(crate) own: Vec<Own>,
    pub(crate) consumer: BaseConsumer<CoreContext>,
    pub(crate) restorer: Restorer,
    /// Shared with the delivery thread; used here (claims) only while no
    /// delivery is in flight.
    pub(crate) sender: Arc<Sender>,
    pub(crate) tail: Tail,
    /// The batch handed to the delivery thread and not yet collected.
    pub(crate) pending: Option<Pending>,
    /// The output topics' value format.
    pub(crate) out: Arc<OutFormat>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) reported: Stats,
    /// Stats of partitions this process gave up (so totals never shrink).
    pub(crate) retired: Stats,
    /// Owner-cache answers of partitions given up, and the total last
    /// reported.
    pub(crate) owner_hits_retired: u64,
    pub(crate) owner_hits_reported: u64,
    pub(crate) cmd_topic: String,
    /// Publishes the partitions' positions to the thread that sets the
    /// lag gauges.
    pub(crate) lag: LagProbe,
    pub(crate) resume: Resume,
    /// This run's batch token and the last batch number.
    pub(crate) batch: BatchId,
    /// The first assignment was handled.
    pub(crate) joined: bool,
    /// Per partition: the offset of the last changelog record this
    /// process wrote or read (a gap before its next marker means another
    /// instance writes the partition).
    pub(crate) cl_last: Vec<Option<i64>>,
    /// Per partition: how often it stood by since it was last assigned
    /// (the stand-by backoff doubles with it).
    pub(crate) stand_bys: Vec<u32>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").field("partitions", &self.parts.len()).finish_non_exhaustive()
    }
}

/// What a batch in delivery needs once its markers landed
/// ([`Worker::complete`], in `fence.rs`).
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) batch: BatchId,
    /// The partitions whose markers the job carries, in its order, and the
    /// changelog records each wrote before its marker.
    pub(crate) markers_at: Vec<u16>,
    pub(crate) cl_records: Vec<i64>,
    pub(crate) handled: u64,
    pub(crate) dups: u64,
    pub(crate) t0: Instant,
    pub(crate) oldest_input: Option<i64>,
    /// Events folded into profiles, counted by their input time.
    pub(crate) applied: Origins,
}

struct In {
    p: u16,
    offset: i64,
    /// `None`: a record idgraph did not write (skipped in order, counted).
    env: Option<Envelope>,
    /// Broker timestamp of the record, ms since the epoch.
    ts: Option<i64>,
}

impl Worker {
    /// Opens the state, drops what an older version left in its outbox and
    /// joins the core's consumer group on `idgraph.cmd`.
    pub fn open(cfg: EngineConfig, topics: &Topics, metrics: Arc<Metrics>, out: Arc<OutFormat>) -> Result<Self, StreamError> {
        let ropts = RocksOptions {
            block_cache_bytes: cfg.block_cache_mb as usize * (1 << 20),
            write_buffer_bytes: cfg.write_buffer_mb as usize * (1 << 20),
            ..Default::default()
        };
        std::fs::create_dir_all(&cfg.state_dir)
            .map_err(|e| StreamError::Internal(format!("cannot create state dir {}: {e}", cfg.state_dir.display())))?;
        let store = RocksStore::open(&cfg.state_dir, &ropts)?;
        let n = check_partitions(&store, cfg.partitions)?;
        idgraph_state::check_types(&store, &cfg.core, true)?;
        let known = KnownKeys::build(&store, KNOWN_KEYS_MIN_CAPACITY)?;
        let sender = Arc::new(Sender::new(&cfg.cluster, cfg.compression, topics.clone())?);
        let in_flight = Arc::new(InFlight::default());
        let tail = Tail::start(sender.clone(), in_flight.clone())?;
        let left = crate::outbox::drop_leftovers(&store)?;
        if left > 0 {
            tracing::info!(records = left, "dropped the outbox an older version persisted; its batches are redone");
        }
        let consumer: BaseConsumer<CoreContext> = client::core_consumer(&cfg.cluster, &cfg.group_id)
            .create_with_context(CoreContext::new(in_flight))
            .map_err(StreamError::kafka("core consumer"))?;
        consumer.subscribe(&[&topics.cmd]).map_err(StreamError::kafka("subscribe to idgraph.cmd"))?;
        let restorer = Restorer::new(&cfg.cluster, &cfg.group_id, &topics.changelog, n)?;
        let lag = LagProbe::start(&cfg.cluster, &topics.cmd, n, metrics.clone())?;
        let parts = (0..n).map(|p| Partition::new(p, n, cfg.core.clone()).with_owner_cache(cfg.owner_cache_bytes / n as usize)).collect();
        // Distinct per run (not a decision input: it only names batches).
        let token = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
            ^ (u64::from(std::process::id()) << 32);
        Ok(Self {
            cfg,
            store,
            known,
            parts,
            meta: (0..n).map(|_| PartMeta::new(n)).collect(),
            own: vec![Own::No; n as usize],
            consumer,
            restorer,
            sender,
            tail,
            pending: None,
            out,
            metrics,
            reported: Stats::default(),
            retired: Stats::default(),
            owner_hits_retired: 0,
            owner_hits_reported: 0,
            cmd_topic: topics.cmd.clone(),
            lag,
            resume: Resume::default(),
            batch: BatchId { token, seq: 0 },
            joined: false,
            cl_last: vec![None; n as usize],
            stand_bys: vec![0; n as usize],
        })
    }

    /// Runs batches until `stop`, then flushes the state and leaves the
    /// group.
    pub fn run(mut self, stop: &AtomicBool) -> Result<(), StreamError> {
        while !stop.load(Ordering::Relaxed) {
            self.resume.tick(&self.consumer);
            self.retry_standby()?;
            self.batch()?;
            for (p, m) in self.meta.iter().enumerate() {
                self.lag.publish(p as u16, (self.own[p] == Own::Active).then_some(m.cmd_offset));
            }
        }
        self.complete()?;
        self.metrics.ready.store(false, Ordering::Relaxed);
        self.store.flush()?;
        // Leaving the group hands the partitions over at once.
        self.consumer.unsubscribe();
        let _ = self.consumer.poll(Duration::from_millis(100));
        Ok(())
    }

    /// Acts on the rebalances seen by the last poll: drops buffered records
    /// of partitions that left (and of those that arrive: they are read
    /// again from their restored position), restores the new ones.
    fn rebalance(&mut self, recs: &mut Vec<In>) -> Result<(), StreamError> {
        let changes = self.consumer.context().take();
        if !changes.is_empty() {
            // Restores, claims and releases see every earlier batch landed.
            self.complete()?;
        }
        for change in changes {
            match change {
                Change::Revoked { partitions, lost } => {
                    let label = if lost { "lost" } else { "revoked" };
                    tracing::info!(partitions = ?partitions, "core partitions {label}");
                    self.metrics.rebalances.add(label, partitions.len() as u64);
                    recs.retain(|r| !partitions.contains(&r.p));
                    for p in partitions {
                        if (p as usize) < self.own.len() {
                            self.release(p, Own::No);
                            self.stand_bys[p as usize] = 0;
                        }
                    }
                }
                Change::Assigned(partitions) => {
                    tracing::info!(partitions = ?partitions, "core partitions assigned; restoring");
                    self.metrics.rebalances.add("assigned", partitions.len() as u64);
                    self.joined = true;
                    recs.retain(|r| !partitions.contains(&r.p));
                    let partitions: Vec<u16> = partitions.into_iter().filter(|p| (*p as usize) < self.own.len()).collect();
                    if partitions.is_empty() {
                        continue;
                    }
                    self.acquire(&partitions, false)?;
                }
            }
        }
        self.report_ownership();
        Ok(())
    }

    pub(crate) fn report_ownership(&self) {
        let owned = self.own.iter().filter(|o| **o == Own::Active).count();
        self.metrics.partitions_owned.store(owned as u64, Ordering::Relaxed);
        self.metrics.ready.store(self.joined, Ordering::Relaxed);
    }

    /// Up to `max_batch_records` records of the owned partitions, decoded;
    /// also returns the time spent decoding them.
    fn poll(&mut self) -> (Vec<In>, Duration) {
        let mut recs = Vec::new();
        let mut decoding = Duration::ZERO;
        let mut window = Window::new(Duration::from_millis(self.cfg.batch_linger_ms));
        while recs.len() < self.cfg.max_batch_records {
            let Some(m) = window.next(&self.consumer, "core") else { break };
            let p = m.partition() as u16;
            if self.own.get(p as usize) != Some(&Own::Active) {
                continue;
            }
            if self.resume.check(&self.consumer, &self.cmd_topic, m.partition(), m.offset()) == Verdict::Skip {
                continue;
            }
            let td = Instant::now();
            let decoded = envelope::decode(m.payload().unwrap_or_default());
            decoding += td.elapsed();
            let env = match decoded {
                Ok(env) => Some(env),
                Err(reason) => {
                    // Not written by idgraph (or by an incompatible
                    // version): skipped in offset order, counted, never applied.
                    tracing::error!(partition = p, offset = m.offset(), %reason, "undecodable record on the command topic; skipped");
                    self.metrics.rejects.add("undecodable_command", 1);
                    None
                }
            };
            recs.push(In { p, offset: m.offset(), env, ts: m.timestamp().to_millis() });
        }
        (recs, decoding)
    }

    fn batch(&mut self) -> Result<(), StreamError> {
        let tp = Instant::now();
        let (mut recs, decoding) = self.poll();
        let polling = tp.elapsed().saturating_sub(decoding);
        self.metrics.phase_seconds.add("core_poll", polling);
        self.metrics.phase_seconds.add("core_decode", decoding);
        self.rebalance(&mut recs)?;
        if recs.is_empty() {
            return self.complete();
        }
        self.batch.seq += 1;
        // Where each partition the batch advances started (its changelog
        // marker's `from`).
        let mut from: Vec<Option<i64>> = vec![None; self.parts.len()];
        let t0 = Instant::now();
        let n = self.parts.len() as u16;
        // The oldest input the batch applied (for the event-to-output
        // latency); each command sent carries the origin of the command or
        // input record it came from.
        let mut oldest_input: Option<i64> = None;
        // The events the batch folded into their profiles (per-event latency).
        let mut applied = Origins::default();
        let mut loader = StoreLoader::new(&self.store, &self.known);
        prefetch(&recs, &mut self.parts, &mut loader);
        let mut fx = Effects::default();
        let mut outgoing: FxHashMap<(u16, u16), (Vec<Command>, Vec<i64>)> = FxHashMap::default();
        // The partition each lifecycle and consent event came from.
        let (mut lc_from, mut cs_from) = (Vec::new(), Vec::new());
        let (mut handled, mut dups) = (0u64, 0u64);
        for r in recs {
            let pi = r.p as usize;
            let (m, part) = (&mut self.meta[pi], &mut self.parts[pi]);
            if r.offset < m.cmd_offset {
                continue;
            }
            from[pi].get_or_insert(m.cmd_offset);
            m.cmd_offset = r.offset + 1;
            let input_ts = input_origin(&r);
            let Some(env) = r.env else { continue };
            let mut apply = |c: Command, origin: i64, part: &mut Partition, loader: &mut StoreLoader<'_>| {
                if origin > 0 {
                    oldest_input = Some(oldest_input.map_or(origin, |o| o.min(origin)));
                }
                let before = part.stats.events_applied;
                part.handle(c, loader, &mut fx);
                applied.add(origin, part.stats.events_applied - before);
                lc_from.resize(fx.lifecycle.len(), r.p);
                cs_from.resize(fx.consent.len(), r.p);
                for c in fx.cmds.drain(..) {
                    let (cmds, origins) = outgoing.entry((r.p, c.partition(n))).or_default();
                    cmds.push(c);
                    origins.push(origin);
                }
            };
            match env {
                Envelope::Input { topic, partition, items, .. } => {
                    for (o, ev) in items {
                        let mark = m.input_mark(&topic, partition);
                        if o <= *mark {
                            dups += 1;
                            continue;
                        }
                        *mark = o;
                        if ev.idents.is_empty() {
                            continue;
                        }
                        handled += 1;
                        apply(Command::Route { ev: Box::new(ev), probe: 0 }, input_ts, part, &mut loader);
                    }
                }
                Envelope::Internal { from, first_seq, cmds, origins } => {
                    let Some(last) = m.applied.get_mut(from as usize) else { continue };
                    if first_seq > *last + 1 {
                        // Commands from `from` are missing: the topic lost
                        // records, or was recreated under a kept state.
                        tracing::error!(partition = r.p, from, expected = *last + 1, got = first_seq, "gap in the command sequence");
                        self.metrics.sequence_gaps.fetch_add(1, Ordering::Relaxed);
                    }
                    for (i, c) in cmds.into_iter().enumerate() {
                        let seq = first_seq + i as u64;
                        if seq <= *last {
                            dups += 1;
                            continue;
                        }
                        *last = seq;
                        handled += 1;
                        apply(c, origins.get(i).copied().unwrap_or(0), part, &mut loader);
                    }
                }
            }
        }
        let mut out: Vec<OutRecord> = Vec::new();
        // The partition each record of `out` comes from.
        let mut out_from: Vec<u16> = Vec::new();
        for (le, &p) in fx.lifecycle.iter().zip(&lc_from) {
            out.push(keyed(Dest::Lifecycle, &le.profile_id.to_string(), self.out.event(Dest::Lifecycle, le)?));
            out_from.push(p);
        }
        for (ce, &p) in fx.consent.iter().zip(&cs_from) {
            out.push(keyed(Dest::Consent, &ce.profile_id, self.out.event(Dest::Consent, ce)?));
            out_from.push(p);
        }
        for part in &mut self.parts {
            for id in part.take_touched() {
                // A profile that is gone gets a tombstone (a null value).
                let value = match golden::output(id, part.profile(id, &mut loader), &self.cfg.core) {
                    Some(ProfileOutput::Profile(line)) => Some(self.out.profile(line)?),
                    Some(ProfileOutput::Gone(_)) => None,
                    None => continue,
                };
                out_from.push(part.id);
                out.push(OutRecord {
                    dest: Dest::Profiles,
                    partition: Some(part.id as i32),
                    key: Some(id.to_string().into_bytes()),
                    value,
                    headers: vec![],
                });
            }
        }
        let mut pairs: Vec<_> = outgoing.into_iter().collect();
        pairs.sort_unstable_by_key(|(k, _)| *k);
        // (sender, receiver, envelope): encoded on the delivery thread.
        let mut envelopes: Vec<(u16, u16, Envelope)> = Vec::with_capacity(pairs.len());
        for ((s, d), (cmds, origins)) in pairs {
            let sent = &mut self.meta[s as usize].sent[d as usize];
            let first_seq = *sent + 1;
            *sent += cmds.len() as u64;
            envelopes.push((s, d, Envelope::Internal { from: s, first_seq, origins, cmds }));
        }
        if let Some(e) = loader.error.take() {
            return Err(e.into());
        }
        drop(loader);
        // The previous batch's delivery: a partition it finds written by
        // another instance stands by, and this batch's work on it is
        // dropped here, never written or produced.
        let tc = Instant::now();
        self.complete()?;
        let collecting = tc.elapsed();
        if out_from.iter().any(|&p| self.own[p as usize] != Own::Active) {
            let mut from_of = out_from.iter();
            out.retain(|_| from_of.next().is_some_and(|&p| self.own[p as usize] == Own::Active));
        }
        let cmds: Vec<(u16, Envelope)> =
            envelopes.into_iter().filter(|(s, ..)| self.own[*s as usize] == Own::Active).map(|(_, d, env)| (d, env)).collect();
        let mut wb = Batch::default();
        let mut cl_records = vec![0i64; self.parts.len()];
        // Produced last, once `out` is acknowledged (below).
        let mut markers: Vec<(u16, OutRecord)> = Vec::new();
        for (pi, part) in self.parts.iter_mut().enumerate() {
            if self.own[pi] != Own::Active {
                continue;
            }
            let first = wb.op_count();
            idgraph_state::write_dirty(&mut wb, part, &mut self.known);
            let Some(from) = from[pi] else { continue };
            let p = pi as u16;
            cl_records[pi] = (wb.op_count() - first) as i64;
            out.extend(wb.ops_from(first).map(|o| changelog::record(p, self.batch, o.cf, o.key, o.value)));
            let m = &mut self.meta[pi];
            m.batch = self.batch;
            wb.put(Cf::Meta, part_meta_key(p), idgraph_core::record::encode(m));
            markers.push((p, changelog::marker(p, from, m)));
        }
        let (markers_at, marker_recs): (Vec<u16>, Vec<OutRecord>) = markers.into_iter().unzip();
        self.metrics.outbox_pending.store((out.len() + cmds.len() + marker_recs.len()) as u64, Ordering::Relaxed);
        let tw = Instant::now();
        let applying = (tw - t0).saturating_sub(collecting);
        self.metrics.phase_seconds.add("core_apply", applying);
        self.store.write(wb)?;
        crate::fault::point("run.after-commit");
        let written = tw.elapsed();
        self.metrics.phase_seconds.add("core_write", written);
        // Markers go last, once everything else of the batch is
        // acknowledged: a batch whose marker is on the changelog has all of
        // its outputs and commands on their topics, so a new owner that
        // restores past it loses nothing (ADR 0004).
        let (records, partitions) = (out.len() + cmds.len(), marker_recs.len());
        self.tail.submit(Job { out, cmds, markers: marker_recs })?;
        self.pending = Some(Pending { batch: self.batch, markers_at, cl_records, handled, dups, t0, oldest_input, applied });
        let te = Instant::now();
        for part in &mut self.parts {
            part.end_batch((self.cfg.cache_entries / n as usize).max(1024), false);
        }
        tracing::debug!(
            batch = self.batch.seq,
            commands = handled,
            duplicates = dups,
            records,
            partitions,
            poll_ms = polling.as_millis() as u64,
            decode_ms = decoding.as_millis() as u64,
            apply_ms = applying.as_millis() as u64,
            wait_ms = collecting.as_millis() as u64,
            write_ms = written.as_millis() as u64,
            evict_ms = te.elapsed().as_millis() as u64,
            "core batch written; delivering"
        );
        Ok(())
    }

    /// Counts a delivered batch: `took` from its start to its markers'
    /// acknowledgement, `oldest_ms` the age of its oldest input then.
    pub(crate) fn account(&mut self, handled: u64, dups: u64, took: Duration, oldest_ms: Option<i64>) {
        let m = &self.metrics;
        m.commands.fetch_add(handled, Ordering::Relaxed);
        m.duplicates_dropped.fetch_add(dups, Ordering::Relaxed);
        let mut s = self.retired.clone();
        for p in &self.parts {
            s.merge(&p.stats);
        }
        let d = |a: u64, b: u64| a.saturating_sub(b);
        m.profiles_created.fetch_add(d(s.profiles_created, self.reported.profiles_created), Ordering::Relaxed);
        m.merges.fetch_add(d(s.merges, self.reported.merges), Ordering::Relaxed);
        m.splits.fetch_add(d(s.splits, self.reported.splits), Ordering::Relaxed);
        m.conflicts.fetch_add(d(s.conflicts, self.reported.conflicts), Ordering::Relaxed);
        m.identifiers_shared.fetch_add(d(s.identifiers_shared, self.reported.identifiers_shared), Ordering::Relaxed);
        m.events_unlinkable.fetch_add(d(s.events_unlinkable, self.reported.events_unlinkable), Ordering::Relaxed);
        self.reported = s;
        let hits = self.owner_hits_retired + self.parts.iter().map(Partition::owner_cache_hits).sum::<u64>();
        m.owner_cache_hits.fetch_add(d(hits, self.owner_hits_reported), Ordering::Relaxed);
        self.owner_hits_reported = hits;
        m.batches.fetch_add(1, Ordering::Relaxed);
        m.batch_seconds.observe(took.as_secs_f64());
        if let Some(age) = oldest_ms {
            m.event_to_output_seconds.observe(age.max(0) as f64 / 1000.0);
        }
    }
}

/// The input time of an input record (the envelope's oldest, else the
/// broker's timestamp; 0 if unknown): the origin its events' commands carry.
fn input_origin(r: &In) -> i64 {
    match &r.env {
        Some(Envelope::Input { oldest_ms, .. }) if *oldest_ms > 0 => *oldest_ms,
        Some(Envelope::Input { .. }) => r.ts.unwrap_or(0),
        _ => 0,
    }
}

fn keyed(dest: Dest, key: &str, value: Vec<u8>) -> OutRecord {
    OutRecord { dest, partition: None, key: Some(key.as_bytes().to_vec()), value: Some(value), headers: vec![] }
}

/// One multi-get per family for the records the batch's commands target
/// (the routes' first identifiers are [`prefetch_owners`]' first step).
fn prefetch(recs: &[In], parts: &mut [Partition], loader: &mut StoreLoader<'_>) {
    let mut targets: Vec<(u16, Target<'_>)> = Vec::new();
    for r in recs {
        if let Some(Envelope::Internal { cmds, .. }) = &r.env {
            let part = &parts[r.p as usize];
            targets.extend(cmds.iter().filter(|c| c.route_start().is_none() && part.reads_target(c)).map(|c| (r.p, c.target())));
        }
    }
    if !targets.is_empty() {
        loader.prefetch(&targets);
    }
    drop(targets);
    let routes = recs.iter().flat_map(|r| {
        let starts: Box<dyn Iterator<Item = (&[IdentKey], usize)>> = match &r.env {
            None => Box::new(std::iter::empty()),
            Some(Envelope::Input { items, .. }) => Box::new(items.iter().map(|(_, ev)| (&ev.idents[..], 0))),
            Some(Envelope::Internal { cmds, .. }) => Box::new(cmds.iter().filter_map(Command::route_start)),
        };
        starts.map(move |(idents, first)| (r.p, idents, first))
    });
    prefetch_owners(parts, routes, loader);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_input_records_origin_is_its_envelopes_time_else_the_brokers() {
        let input = |oldest_ms: i64, ts: Option<i64>| In {
            p: 0,
            offset: 0,
            env: Some(Envelope::Input { topic: "t".into(), partition: 0, oldest_ms, items: vec![] }),
            ts,
        };
        assert_eq!(input_origin(&input(500, Some(900))), 500);
        assert_eq!(input_origin(&input(0, Some(400))), 400);
        assert_eq!(input_origin(&input(0, None)), 0);
        assert_eq!(input_origin(&In { p: 2, offset: 0, env: None, ts: Some(50) }), 0); // not idgraph's
        let cmds =
            In { p: 2, offset: 0, env: Some(Envelope::Internal { from: 1, first_seq: 1, origins: vec![7], cmds: vec![] }), ts: Some(50) };
        assert_eq!(input_origin(&cmds), 0); // commands carry their own
    }
}
