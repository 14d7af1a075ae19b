//! Taking and giving up core partitions, with a fence against a second
//! writer (ADR 0004).
//!
//! A broker's coordinator can hand a partition to a new member while the
//! old owner still runs it (tansu 0.6 does, for a moment). Two checks keep
//! two instances from running a partition together:
//! - a **claim** after every restore: an empty batch marker on the
//!   partition's changelog, which must land right after the last record the
//!   restore read; if it does not, someone else is writing, and the
//!   partition stands by instead of running;
//! - on every batch, the partition's marker must follow its own previous
//!   marker and this batch's records exactly; a gap means another instance
//!   wrote in between, and the partition stands by (after that one batch).
//!   The check runs when the worker collects a delivered batch
//!   ([`Worker::complete`], ADR 0009), which also keeps where each
//!   partition's changelog now ends.
//!
//! A partition standing by is paused and tried again later (rebuilt from
//! the whole changelog, then claimed), with a doubling backoff, until it
//! succeeds or a rebalance takes it away.

use crate::changelog;
use crate::error::StreamError;
use crate::meta::{clpos_key, part_meta_key, ClPos};
use crate::tail::Delivered;
use crate::worker::{Own, Worker};
use idgraph_core::partition::Partition;
use idgraph_store::{Batch, Cf, Store};
use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The first wait of a partition standing by.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(8);

impl Worker {
    /// Restores `ps` (`rebuild`: from the start of their changelogs), claims
    /// them and resumes those whose claim landed where expected; the others
    /// stand by.
    pub(crate) fn acquire(&mut self, ps: &[u16], rebuild: bool) -> Result<(), StreamError> {
        // The restore reads the store and the claims share the producer:
        // the batch in delivery lands first (ADR 0009).
        self.complete()?;
        let restored = self.restorer.restore(&self.store, &mut self.known, ps, rebuild, &self.metrics)?;
        self.batch.seq += 1;
        let claim = self.batch;
        // Per partition: the restored value of every key whose last record
        // is not that value (written last by a batch that did not apply,
        // or by a claim a later-applied batch went behind), so that what
        // compaction keeps is the restored state (`changelog` docs); then
        // the claim marker.
        let mut claims: Vec<crate::outbox::OutRecord> = Vec::new();
        let mut marker_at: Vec<usize> = Vec::with_capacity(restored.len());
        for r in &restored {
            for (cf, key) in &r.unapplied {
                let value = self.store.get(*cf, &idgraph_state::current_key(*cf, key.clone()))?;
                claims.push(changelog::record(r.p, claim, *cf, key, value.as_deref()));
            }
            let mut m = r.meta.clone();
            m.batch = claim;
            marker_at.push(claims.len());
            claims.push(changelog::marker(r.p, m.cmd_offset, &m));
        }
        let landed = self.sender.deliver_tracked(&claims, |r| changelog::is_marker(r.key.as_deref().unwrap_or_default()))?;
        let mut wb = Batch::default();
        let mut tpl = TopicPartitionList::new();
        let mut lost = Vec::new();
        for (i, r) in restored.into_iter().enumerate() {
            let (p, pi) = (r.p, r.p as usize);
            let at = landed.iter().find(|(j, _)| *j == marker_at[i]).map(|(_, o)| *o);
            // The claim's records and marker follow the last record read.
            let end = r.end + r.unapplied.len() as i64;
            if at != Some(end) {
                tracing::warn!(partition = p, expected = end, got = ?at, "another instance writes this partition's changelog; standing by");
                self.metrics.fenced.fetch_add(1, Ordering::Relaxed);
                lost.push(p);
                continue;
            }
            let mut m = r.meta;
            m.batch = claim;
            wb.put(Cf::Meta, part_meta_key(p), idgraph_core::record::encode(&m));
            if r.unapplied.is_empty() {
                wb.put(Cf::Meta, clpos_key(p), idgraph_core::record::encode(&ClPos { batch: claim, offset: end }));
            } else {
                // A batch without its marker may be a paused owner's, whose
                // marker can still land after this claim and chain on it;
                // its records lie before the claim, where continuing from
                // the claim would not read them: the next restore rebuilds
                // unless a batch of ours lands first (and so sets a
                // position past that marker, or is fenced by it).
                wb.delete(Cf::Meta, clpos_key(p));
            }
            self.cl_last[pi] = Some(end);
            self.renew(p);
            let off = if m.cmd_offset > 0 { Offset::Offset(m.cmd_offset) } else { Offset::Beginning };
            self.resume.expect(&self.cmd_topic, p as i32, m.cmd_offset);
            self.consumer
                .seek(&self.cmd_topic, p as i32, off, Duration::from_secs(10))
                .map_err(StreamError::kafka(format!("seek idgraph.cmd partition {p}")))?;
            self.meta[pi] = m;
            self.own[pi] = Own::Active;
            tpl.add_partition(&self.cmd_topic, p as i32);
        }
        self.store.write(wb)?;
        if tpl.count() > 0 {
            self.consumer.resume(&tpl).map_err(StreamError::kafka("resume restored partitions"))?;
        }
        for p in lost {
            self.stand_by(p)?;
        }
        self.report_ownership();
        Ok(())
    }

    /// Collects the batch in delivery, if any (waiting for it): keeps where
    /// each advanced partition's changelog now ends, stands by the
    /// partitions another instance wrote, and counts the batch.
    pub(crate) fn complete(&mut self) -> Result<(), StreamError> {
        let Some(p) = self.pending.take() else { return Ok(()) };
        let tw = Instant::now();
        let Some(Delivered { landed, counts, out_time, markers_time, acked_at, acked_ms }) = self.tail.collect()? else {
            return Err(StreamError::Internal("a batch in delivery has no result".into()));
        };
        self.metrics.phase_seconds.add("core_deliver", out_time);
        self.metrics.phase_seconds.add("core_markers", markers_time);
        let landed = landed?;
        // Where each advanced partition's changelog now ends: its local
        // state can continue from there after a restart.
        let mut pos = Batch::default();
        let mut fenced = Vec::new();
        for (i, offset) in landed {
            let part = p.markers_at[i];
            let pi = part as usize;
            // Our records and marker follow our last one directly, unless
            // another instance wrote in between.
            if self.cl_last[pi].is_some_and(|l| offset != l + p.cl_records[pi] + 1) {
                // This batch may be a losing fork: never continue from it;
                // the next restore of `part` rebuilds.
                fenced.push(part);
                pos.delete(Cf::Meta, clpos_key(part));
                continue;
            }
            self.cl_last[pi] = Some(offset);
            pos.put(Cf::Meta, clpos_key(part), idgraph_core::record::encode(&ClPos { batch: p.batch, offset }));
        }
        if !p.markers_at.is_empty() {
            // The markers landed, their positions are not stored yet: a
            // restart finds the local state one batch past its position.
            crate::fault::point("run.before-clpos");
        }
        self.store.write(pos)?;
        for part in fenced {
            tracing::warn!(partition = part, "another instance wrote this partition's changelog; standing by");
            self.metrics.fenced.fetch_add(1, Ordering::Relaxed);
            self.stand_by(part)?;
        }
        self.metrics.deliver_seconds.observe((out_time + markers_time).as_secs_f64());
        self.metrics.add_out(counts);
        self.metrics.outbox_pending.store(0, Ordering::Relaxed);
        // Timed to the acknowledgement, not to this collection (which
        // waits for the next batch's poll and apply).
        self.account(p.handled, p.dups, acked_at.saturating_duration_since(p.t0), p.oldest_input.map(|ts| acked_ms - ts));
        p.applied.observe(&self.metrics.event_to_profile_seconds, acked_ms);
        tracing::debug!(
            batch = p.batch.seq,
            deliver_ms = out_time.as_millis() as u64,
            markers_ms = markers_time.as_millis() as u64,
            "core batch acknowledged"
        );
        self.metrics.phase_seconds.add("core_wait", tw.elapsed());
        Ok(())
    }

    /// Drops what this process holds of partition `p` in memory and marks
    /// it `to` (its local state stays on disk).
    pub(crate) fn release(&mut self, p: u16, to: Own) {
        let pi = p as usize;
        self.own[pi] = to;
        self.cl_last[pi] = None;
        self.renew(p);
        self.resume.forget(&self.cmd_topic, p as i32);
        self.lag.forget(p);
    }

    /// Replaces partition `p`'s in-memory state (caches) with a fresh one,
    /// keeping its counts in the totals.
    fn renew(&mut self, p: u16) {
        let n = self.cfg.partitions;
        let old = std::mem::replace(&mut self.parts[p as usize], Partition::new(p, n, self.cfg.core.clone()));
        self.retired.merge(&old.stats);
        self.owner_hits_retired += old.owner_cache_hits();
        // The old owner cache is freed before the new one is allocated, so
        // the process never holds two for one partition.
        drop(old);
        self.parts[p as usize].set_owner_cache(self.cfg.owner_cache_bytes / n as usize);
    }

    /// Pauses partition `p` and tries it again after a backoff that doubles
    /// with each stand-by since it was assigned (1 s to 8 s), plus a spread
    /// that differs between instances, so two of them do not retry in step.
    pub(crate) fn stand_by(&mut self, p: u16) -> Result<(), StreamError> {
        let n = &mut self.stand_bys[p as usize];
        let backoff = (FIRST_BACKOFF * 2u32.pow((*n).min(3))).min(MAX_BACKOFF);
        *n += 1;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.cmd_topic, p as i32);
        self.consumer.pause(&tpl).map_err(StreamError::kafka("pause a partition standing by"))?;
        let spread = Duration::from_millis((self.batch.token ^ u64::from(p).wrapping_mul(0x9E37_79B9_7F4A_7C15)) % 500);
        self.release(p, Own::Standby { retry_at: Instant::now() + backoff + spread });
        self.report_ownership();
        Ok(())
    }

    /// Tries again the partitions standing by whose time has come.
    pub(crate) fn retry_standby(&mut self) -> Result<(), StreamError> {
        let now = Instant::now();
        let due: Vec<u16> = (0..self.own.len())
            .filter(|&i| matches!(self.own[i], Own::Standby { retry_at, .. } if retry_at <= now))
            .map(|i| i as u16)
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        tracing::info!(partitions = ?due, "trying partitions that stood by again");
        self.acquire(&due, true)
    }
}
