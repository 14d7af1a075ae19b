//! The core's batch loop over `idgraph.cmd` (ADR 0003).
//!
//! Per batch: take up to `max_batch_records` envelopes, drop what each
//! partition has already applied (input offsets, sender sequences), run
//! the rest through the partitions, then commit the dirty records, every
//! partition's stream meta and the outbox (commands, profiles, lifecycle,
//! consent) in one RocksDB write, and drain the outbox.

use crate::client;
use crate::config::EngineConfig;
use crate::envelope::{self, Envelope};
use crate::error::StreamError;
use crate::metrics::Metrics;
use crate::outbox::{Dest, OutRecord, Outbox, Sender};
use crate::resume::{Resume, Verdict};
use crate::topics::Topics;
use crate::window::Window;
use idgraph_core::command::{Command, Target};
use idgraph_core::golden::{self, ProfileOutput};
use idgraph_core::partition::{Effects, Loader, Partition, Stats};
use idgraph_state::{check_partitions, KnownKeys, StoreLoader};
use idgraph_store::{Batch, Cf, RocksOptions, RocksStore, Store};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Keys the known-keys filter holds before it stops answering "absent".
const KNOWN_KEYS_MIN_CAPACITY: u64 = 4_000_000;

/// What a partition needs to resume and to drop duplicates; kept under
/// the partition's own key prefix, written with every batch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PartMeta {
    /// Next `idgraph.cmd` offset to consume.
    pub cmd_offset: i64,
    /// Highest applied offset per input (topic, partition).
    pub inputs: Vec<(String, i32, i64)>,
    /// Highest applied sequence per sender partition (0: none; sequences
    /// start at 1).
    pub applied: Vec<u64>,
    /// Last sequence sent per receiver partition.
    pub sent: Vec<u64>,
}

impl PartMeta {
    fn new(partitions: u16) -> Self {
        Self { cmd_offset: 0, inputs: Vec::new(), applied: vec![0; partitions as usize], sent: vec![0; partitions as usize] }
    }

    fn input_mark(&mut self, topic: &str, partition: i32) -> &mut i64 {
        let i = match self.inputs.iter().position(|(t, p, _)| t == topic && *p == partition) {
            Some(i) => i,
            None => {
                self.inputs.push((topic.to_string(), partition, -1));
                self.inputs.len() - 1
            }
        };
        &mut self.inputs[i].2
    }
}

pub fn part_meta_key(p: u16) -> Vec<u8> {
    let mut k = p.to_be_bytes().to_vec();
    k.extend_from_slice(b"\xFEstream");
    k
}

pub struct Worker {
    cfg: EngineConfig,
    store: RocksStore,
    known: KnownKeys,
    parts: Vec<Partition>,
    meta: Vec<PartMeta>,
    consumer: BaseConsumer,
    sender: Sender,
    outbox: Outbox,
    metrics: Arc<Metrics>,
    reported: Stats,
    cmd_topic: String,
    lag_updated: Instant,
    resume: Resume,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").field("partitions", &self.parts.len()).finish_non_exhaustive()
    }
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
    /// Opens the state, drains what a previous run left in the outbox and
    /// starts consuming every partition of `idgraph.cmd` where the state
    /// left off.
    pub fn open(cfg: EngineConfig, topics: &Topics, metrics: Arc<Metrics>) -> Result<Self, StreamError> {
        let ropts = RocksOptions {
            block_cache_bytes: cfg.block_cache_mb as usize * (1 << 20),
            write_buffer_bytes: cfg.write_buffer_mb as usize * (1 << 20),
            ..Default::default()
        };
        std::fs::create_dir_all(&cfg.state_dir)
            .map_err(|e| StreamError::Internal(format!("cannot create state dir {}: {e}", cfg.state_dir.display())))?;
        let store = RocksStore::open(&cfg.state_dir, &ropts)?;
        let n = check_partitions(&store, cfg.partitions)?;
        let mut meta = Vec::with_capacity(n as usize);
        for p in 0..n {
            let m = match store.get(Cf::Meta, &part_meta_key(p))? {
                Some(b) => idgraph_core::record::decode(&b)
                    .map_err(|e| idgraph_state::StateError::Corrupt { what: "stream meta", reason: e.to_string() })?,
                None => PartMeta::new(n),
            };
            meta.push(m);
        }
        let known = KnownKeys::build(&store, KNOWN_KEYS_MIN_CAPACITY)?;
        let sender = Sender::new(&cfg.brokers, topics.clone())?;
        let (mut outbox, left) = Outbox::open(&store)?;
        if !left.is_empty() {
            tracing::info!(records = left.len(), "draining the outbox of the previous run");
            sender.deliver(&left)?;
            outbox.delivered(left.iter().map(|(s, _)| *s));
            outbox.flush_deletes(&store)?;
        }
        let consumer: BaseConsumer =
            client::consumer(&cfg.brokers, &format!("{}-core", cfg.group_id)).create().map_err(StreamError::kafka("core consumer"))?;
        let mut tpl = TopicPartitionList::new();
        let mut resume = Resume::default();
        for (p, m) in meta.iter().enumerate() {
            resume.expect(&topics.cmd, p as i32, m.cmd_offset);
            let off = if m.cmd_offset > 0 { Offset::Offset(m.cmd_offset) } else { Offset::Beginning };
            tpl.add_partition_offset(&topics.cmd, p as i32, off).map_err(StreamError::kafka("offset list"))?;
        }
        consumer.assign(&tpl).map_err(StreamError::kafka("assign idgraph.cmd partitions"))?;
        metrics.partitions_owned.store(n as u64, Ordering::Relaxed);
        let parts = (0..n).map(|p| Partition::new(p, n, cfg.core.clone())).collect();
        Ok(Self {
            cfg,
            store,
            known,
            parts,
            meta,
            consumer,
            sender,
            outbox,
            metrics,
            reported: Stats::default(),
            cmd_topic: topics.cmd.clone(),
            lag_updated: Instant::now(),
            resume,
        })
    }

    /// Runs batches until `stop`, then deletes the drained outbox entries
    /// and flushes the state.
    pub fn run(mut self, stop: &AtomicBool) -> Result<(), StreamError> {
        self.metrics.ready.store(true, Ordering::Relaxed);
        while !stop.load(Ordering::Relaxed) {
            self.resume.tick(&self.consumer);
            self.batch()?;
            if self.lag_updated.elapsed() >= Duration::from_secs(1) {
                self.update_lag();
            }
        }
        self.metrics.ready.store(false, Ordering::Relaxed);
        self.outbox.flush_deletes(&self.store)?;
        self.store.flush()?;
        Ok(())
    }

    /// Consumer lag per partition (one watermark request per partition, at
    /// most once a second).
    fn update_lag(&mut self) {
        self.lag_updated = Instant::now();
        for (p, m) in self.meta.iter().enumerate() {
            if let Ok((_, hi)) = self.consumer.fetch_watermarks(&self.cmd_topic, p as i32, Duration::from_millis(500)) {
                if hi >= 0 {
                    self.metrics.cmd_lag.set(&p.to_string(), (hi - m.cmd_offset).max(0) as u64);
                }
            }
        }
    }

    fn poll(&mut self) -> Vec<In> {
        let mut recs = Vec::new();
        let mut window = Window::new(Duration::from_millis(self.cfg.batch_linger_ms));
        while recs.len() < self.cfg.max_batch_records {
            let Some(m) = window.next(&self.consumer, "core") else { break };
            let p = m.partition() as u16;
            if p as usize >= self.parts.len() {
                continue;
            }
            if self.resume.check(&self.consumer, &self.cmd_topic, m.partition(), m.offset()) == Verdict::Skip {
                continue;
            }
            let env = match envelope::decode(m.payload().unwrap_or_default()) {
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
        recs
    }

    fn batch(&mut self) -> Result<(), StreamError> {
        let recs = self.poll();
        if recs.is_empty() {
            return Ok(());
        }
        let t0 = Instant::now();
        let n = self.parts.len() as u16;
        let oldest_input = recs.iter().filter(|r| matches!(r.env, Some(Envelope::Input { .. }))).filter_map(|r| r.ts).min();
        let mut loader = StoreLoader::new(&self.store, &self.known);
        prefetch(&recs, &self.parts, n, &mut loader);
        let mut fx = Effects::default();
        let mut outgoing: FxHashMap<(u16, u16), Vec<Command>> = FxHashMap::default();
        let (mut handled, mut dups) = (0u64, 0u64);
        for r in recs {
            let pi = r.p as usize;
            let (m, part) = (&mut self.meta[pi], &mut self.parts[pi]);
            if r.offset < m.cmd_offset {
                continue;
            }
            m.cmd_offset = r.offset + 1;
            let Some(env) = r.env else { continue };
            let mut apply = |c: Command, part: &mut Partition, loader: &mut StoreLoader<'_>| {
                part.handle(c, loader, &mut fx);
                for c in fx.cmds.drain(..) {
                    outgoing.entry((r.p, c.partition(n))).or_default().push(c);
                }
            };
            match env {
                Envelope::Input { topic, partition, items } => {
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
                        apply(Command::Route { ev: Box::new(ev), probe: 0 }, part, &mut loader);
                    }
                }
                Envelope::Internal { from, first_seq, cmds } => {
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
                        apply(c, part, &mut loader);
                    }
                }
            }
        }
        let mut out: Vec<OutRecord> = Vec::new();
        for le in &fx.lifecycle {
            out.push(keyed(Dest::Lifecycle, &le.profile_id, serde_json::to_vec(le).unwrap_or_default()));
        }
        for ce in &fx.consent {
            out.push(keyed(Dest::Consent, &ce.profile_id, serde_json::to_vec(ce).unwrap_or_default()));
        }
        for part in &mut self.parts {
            for id in part.take_touched() {
                // A profile that is gone gets a tombstone (a null value).
                let value = match golden::output(id, part.profile(id, &mut loader), &self.cfg.core) {
                    Some(ProfileOutput::Profile(line)) => Some(line.into_bytes()),
                    Some(ProfileOutput::Gone(_)) => None,
                    None => continue,
                };
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
        for ((s, d), cmds) in pairs {
            let sent = &mut self.meta[s as usize].sent[d as usize];
            let first_seq = *sent + 1;
            *sent += cmds.len() as u64;
            out.push(OutRecord::cmd(d, &Envelope::Internal { from: s, first_seq, cmds }));
        }
        if let Some(e) = loader.error.take() {
            return Err(e.into());
        }
        drop(loader);
        let mut wb = Batch::default();
        for part in &mut self.parts {
            idgraph_state::write_dirty(&mut wb, part, &mut self.known);
        }
        for (p, m) in self.meta.iter().enumerate() {
            wb.put(Cf::Meta, part_meta_key(p as u16), idgraph_core::record::encode(m));
        }
        let staged = self.outbox.stage(&mut wb, out);
        self.metrics.outbox_pending.store(staged.len() as u64, Ordering::Relaxed);
        self.store.write(wb)?;
        crate::fault::point("run.after-commit");
        let td = Instant::now();
        self.sender.deliver(&staged)?;
        self.metrics.deliver_seconds.observe(td.elapsed().as_secs_f64());
        self.metrics.count_out(staged.iter().map(|(_, r)| r));
        self.outbox.delivered(staged.iter().map(|(s, _)| *s));
        self.metrics.outbox_pending.store(0, Ordering::Relaxed);
        for part in &mut self.parts {
            part.end_batch((self.cfg.cache_entries / n as usize).max(1024));
        }
        self.account(handled, dups, t0, oldest_input);
        Ok(())
    }

    fn account(&mut self, handled: u64, dups: u64, t0: Instant, oldest_input: Option<i64>) {
        let m = &self.metrics;
        m.commands.fetch_add(handled, Ordering::Relaxed);
        m.duplicates_dropped.fetch_add(dups, Ordering::Relaxed);
        let mut s = Stats::default();
        for p in &self.parts {
            s.merge(&p.stats);
        }
        let d = |a: u64, b: u64| a.saturating_sub(b);
        m.profiles_created.fetch_add(d(s.profiles_created, self.reported.profiles_created), Ordering::Relaxed);
        m.merges.fetch_add(d(s.merges, self.reported.merges), Ordering::Relaxed);
        m.splits.fetch_add(d(s.splits, self.reported.splits), Ordering::Relaxed);
        m.conflicts.fetch_add(d(s.conflicts, self.reported.conflicts), Ordering::Relaxed);
        m.identifiers_shared.fetch_add(d(s.identifiers_shared, self.reported.identifiers_shared), Ordering::Relaxed);
        self.reported = s;
        m.batches.fetch_add(1, Ordering::Relaxed);
        m.batch_seconds.observe(t0.elapsed().as_secs_f64());
        if let Some(ts) = oldest_input {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
            m.event_to_output_seconds.observe((now - ts).max(0) as f64 / 1000.0);
        }
    }
}

fn keyed(dest: Dest, key: &str, value: Vec<u8>) -> OutRecord {
    OutRecord { dest, partition: None, key: Some(key.as_bytes().to_vec()), value: Some(value), headers: vec![] }
}

/// One multi-get per family for the records the batch's commands target.
fn prefetch(recs: &[In], parts: &[Partition], n: u16, loader: &mut StoreLoader<'_>) {
    let mut targets: Vec<(u16, Target<'_>)> = Vec::new();
    for r in recs {
        match &r.env {
            None => {}
            Some(Envelope::Input { items, .. }) => {
                targets.extend(items.iter().filter_map(|(_, ev)| Some((r.p, Target::Ident(ev.idents.first()?)))))
            }
            Some(Envelope::Internal { cmds, .. }) => {
                for c in cmds {
                    targets.push((r.p, c.target()));
                    targets.extend(c.also_reads().iter().map(|k| (k.partition(n), Target::Ident(k))));
                }
            }
        }
    }
    targets.retain(|(p, t)| !parts[*p as usize].is_cached(*t));
    if !targets.is_empty() {
        loader.prefetch(&targets);
    }
}
