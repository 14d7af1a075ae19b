//! The state changelog (ADR 0004): every record a batch writes for a core
//! partition, then a marker closing the batch, on partition `p` of the
//! compacted `idgraph.changelog`; and the [`Chain`] that rebuilds a
//! partition from it.
//!
//! Record key: a family tag byte then the state key (which starts with the
//! partition). Value: the state value, or a tombstone for a deletion.
//! Header `idgraph.batch`: the [`BatchId`] that wrote it. The marker's key
//! is the partition's meta key; its value is a [`Marker`]: the batch's
//! first `idgraph.cmd` offset (`from`) and the partition meta after it.
//!
//! A batch is applied on restore only when its marker arrives and chains:
//! its `from` is the `cmd_offset` reached so far. So a batch cut short by a
//! crash (no marker), a batch delivered twice by a retry, and a batch from
//! an instance that no longer owned the partition (a fork of the chain) are
//! all dropped, and every restored state is one the partition really had
//! after some offset: processing on from there gives the same results,
//! since the partitions are deterministic.
//!
//! Compaction keeps only the latest marker. When the first marker read
//! does not start at offset 0, the head of the log was compacted: every
//! record before it is taken as committed history. That holds because a
//! batch that never committed is always followed, before any later
//! marker, by the restored value of each key it wrote: the next owner
//! writes them ([`Chain::unapplied_keys`]) before its claim marker, so
//! compaction drops the unfinished records or keeps them followed by
//! their correction. (An identifier key written before UUIDs were packed
//! is not the same key as the current one; restore keys it anew, and the
//! correction, later in the log, wins.)

use crate::meta::{part_meta_key, BatchId, PartMeta};
use crate::outbox::{Dest, OutRecord};
use idgraph_store::Cf;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

/// One state write as a changelog record carries it: `None` deletes.
pub type Op = (Cf, Vec<u8>, Option<Vec<u8>>);

/// The header carrying the [`BatchId`] of a changelog record.
pub const BATCH_HEADER: &str = "idgraph.batch";

/// The value of a marker record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Marker {
    /// The `idgraph.cmd` offset the batch started at.
    pub from: i64,
    pub meta: PartMeta,
}

fn tag(cf: Cf) -> u8 {
    cf.index() as u8
}

fn untag(b: u8) -> Option<Cf> {
    Cf::ALL.get(b as usize).copied()
}

/// A state write of partition `p` as a changelog record.
pub fn record(p: u16, batch: BatchId, cf: Cf, key: &[u8], value: Option<&[u8]>) -> OutRecord {
    let mut k = Vec::with_capacity(1 + key.len());
    k.push(tag(cf));
    k.extend_from_slice(key);
    OutRecord {
        dest: Dest::Changelog,
        partition: Some(p as i32),
        key: Some(k),
        value: value.map(<[u8]>::to_vec),
        headers: vec![(BATCH_HEADER.into(), batch.to_bytes().to_vec())],
    }
}

/// Whether a changelog record's key is a marker's (a partition's meta key).
pub fn is_marker(key: &[u8]) -> bool {
    key.first() == Some(&tag(Cf::Meta))
}

/// The marker closing a batch of partition `p` (`meta.batch` names it).
pub fn marker(p: u16, from: i64, meta: &PartMeta) -> OutRecord {
    let mut k = vec![tag(Cf::Meta)];
    k.extend_from_slice(&part_meta_key(p));
    OutRecord {
        dest: Dest::Changelog,
        partition: Some(p as i32),
        key: Some(k),
        value: Some(idgraph_core::record::encode(&Marker { from, meta: meta.clone() })),
        headers: vec![(BATCH_HEADER.into(), meta.batch.to_bytes().to_vec())],
    }
}

/// A changelog record that does not parse (written by something else).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("changelog record at offset {offset}: {reason}")]
pub struct BadRecord {
    pub offset: i64,
    pub reason: &'static str,
}

/// What one record did to the chain.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// Staged (a state record) or ignored.
    Staged,
    /// A batch chained: write these ops; the partition is now at `meta`.
    Apply(Vec<Op>, PartMeta),
    /// A marker that does not chain (a retry's duplicate, a fork, or a
    /// batch already applied); its records were dropped.
    Dropped,
}

/// Rebuilds one partition from its changelog, record by record (pure).
#[derive(Debug, Default)]
pub struct Chain {
    /// Where the partition stands (`None`: no marker applied yet).
    pub at: Option<PartMeta>,
    /// Records of batches not applied yet, with their offsets.
    staged: FxHashMap<BatchId, Vec<(i64, Op)>>,
    /// Records seen before the first marker, in order (taken whole when
    /// the log's head was compacted).
    head: Vec<Op>,
    /// Keys whose last record on the log may not hold their restored
    /// value, with that record's offset: written by a batch not applied
    /// (yet), or rewritten by a claim before a batch applied an older
    /// record of the key (the batch's marker landed after the claim). A
    /// key leaves when a later record of it applies.
    stale: FxHashMap<(Cf, Vec<u8>), i64>,
    /// Offset of the last claim rewrite applied, per key.
    rewritten: FxHashMap<(Cf, Vec<u8>), i64>,
    pub applied_batches: u64,
    pub dropped_batches: u64,
}

impl Chain {
    /// A chain that continues from a partition state already held locally.
    pub fn from(at: PartMeta) -> Self {
        Self { at: Some(at), ..Self::default() }
    }

    /// Feeds the next record of the partition's changelog.
    pub fn push(&mut self, offset: i64, key: &[u8], value: Option<&[u8]>, batch: Option<&[u8]>) -> Result<Step, BadRecord> {
        let bad = |reason| BadRecord { offset, reason };
        let (&t, state_key) = key.split_first().ok_or(bad("empty key"))?;
        let cf = untag(t).ok_or(bad("unknown family tag"))?;
        let id = BatchId::from_bytes(batch.ok_or(bad("no idgraph.batch header"))?).ok_or(bad("bad idgraph.batch header"))?;
        if cf != Cf::Meta {
            let op = (cf, state_key.to_vec(), value.map(<[u8]>::to_vec));
            if self.at.is_none() {
                self.head.push(op.clone());
            }
            self.stale.insert((cf, state_key.to_vec()), offset);
            self.staged.entry(id).or_default().push((offset, op));
            return Ok(Step::Staged);
        }
        let m: Marker = idgraph_core::record::decode(value.ok_or(bad("marker without value"))?).map_err(|_| bad("undecodable marker"))?;
        let ops = self.staged.remove(&id).unwrap_or_default();
        let chains = match &self.at {
            Some(at) => m.from == at.cmd_offset,
            // The first marker: the chain starts at offset 0, or the head
            // was compacted and everything before it is history.
            None => true,
        };
        if !chains {
            // Its keys stay stale (unless a later record of them applies).
            self.dropped_batches += 1;
            return Ok(Step::Dropped);
        }
        let ops = if self.at.is_none() && m.from > 0 {
            // Every record so far is history: none of it stays staged.
            self.staged.clear();
            self.rewritten.clear();
            self.stale.clear();
            std::mem::take(&mut self.head)
        } else {
            // A claim (an empty batch: it consumed no command) rewrites
            // keys; a batch applied after it from older records of such a
            // key leaves the claim's value last on the log.
            let claim = m.from == m.meta.cmd_offset;
            for (at, (cf, k, _)) in &ops {
                let key = (*cf, k.clone());
                if claim {
                    self.rewritten.insert(key.clone(), *at);
                } else if let Some(&r) = self.rewritten.get(&key).filter(|r| *r > at) {
                    self.stale.insert(key.clone(), r);
                }
                if self.stale.get(&key).is_some_and(|s| s <= at) {
                    self.stale.remove(&key);
                }
            }
            ops.into_iter().map(|(_, op)| op).collect()
        };
        self.head.clear();
        // Other staged batches stay: a second writer's batch can be in
        // flight around this marker (a claim lands between its records and
        // its own marker, which may still chain). Batches cut short stay
        // staged, never applied, until the end of the restore.
        self.applied_batches += 1;
        self.at = Some(m.meta.clone());
        Ok(Step::Apply(ops, m.meta))
    }

    /// The keys whose last record on the log may not be their restored
    /// value: written last by batches that did not apply (cut short,
    /// dropped, or still staged), or left behind a claim's rewrite by a
    /// batch that applied after it; each once, in key order. The new owner writes
    /// their restored values before its claim marker, so that compaction,
    /// which keeps each key's last record, keeps the restored state (a
    /// value that never applied, kept before a later marker, would be
    /// taken as history: module docs).
    pub fn unapplied_keys(&self) -> Vec<(Cf, Vec<u8>)> {
        let mut keys: Vec<(Cf, Vec<u8>)> = self.stale.keys().cloned().collect();
        keys.sort_unstable_by(|a, b| (a.0.index(), &a.1).cmp(&(b.0.index(), &b.1)));
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(cmd_offset: i64, token: u64, seq: u64) -> PartMeta {
        PartMeta { cmd_offset, batch: BatchId { token, seq }, ..PartMeta::new(2) }
    }

    /// A changelog as a list of (record, meta) entries fed to a chain.
    struct Log(Vec<OutRecord>);

    impl Log {
        fn batch(&mut self, token: u64, seq: u64, from: i64, to: i64, writes: &[(&str, Option<&str>)], closed: bool) {
            let id = BatchId { token, seq };
            for (k, v) in writes {
                self.0.push(record(0, id, Cf::Idents, k.as_bytes(), v.map(str::as_bytes)));
            }
            if closed {
                self.0.push(marker(0, from, &meta(to, token, seq)));
            }
        }

        /// Replays the log; returns the resulting key-value map and meta.
        fn restore(&self, chain: Chain) -> (std::collections::BTreeMap<Vec<u8>, Vec<u8>>, Option<PartMeta>, Chain) {
            let (kv, chain) = crate::changelog_sim::replay(&self.0, chain);
            (kv, chain.at.clone(), chain)
        }
    }

    impl Log {
        /// What compaction leaves of the whole log: the last record of
        /// each key, in log order.
        fn compacted(&self) -> Log {
            let mut log = self.0.clone();
            crate::changelog_sim::compact(&mut log, self.0.len());
            Log(log)
        }

        /// A new owner's claim at `at` (token `token`): the restored value
        /// of every key `chain` left unapplied, then the claim marker.
        fn claim(&mut self, token: u64, at: i64, chain: &Chain, state: &std::collections::BTreeMap<Vec<u8>, Vec<u8>>) {
            let id = BatchId { token, seq: 1 };
            for (cf, k) in chain.unapplied_keys() {
                self.0.push(record(0, id, cf, &k, state.get(&k).map(Vec::as_slice)));
            }
            self.0.push(marker(0, at, &meta(at, token, 1)));
        }
    }

    #[test]
    fn an_unfinished_batch_compacted_before_its_redo_rewrote_it_is_not_history() {
        let mut log = Log(vec![]);
        log.batch(1, 1, 0, 10, &[("a", Some("1")), ("b", Some("1"))], true);
        // Run 1 dies inside batch 2 (10..20): `a` and a deletion of `b`
        // are on the log, its marker is not.
        log.batch(1, 2, 10, 20, &[("a", Some("2")), ("b", None)], false);
        let (state, at, chain) = log.restore(Chain::default());
        assert_eq!(state, kv(&[("a", "1"), ("b", "1")]));
        assert_eq!(chain.unapplied_keys(), vec![(Cf::Idents, b"a".to_vec()), (Cf::Idents, b"b".to_vec())]);
        // Without the claim's rewrite, compaction after the first batch of
        // the redo (10..15, which does not write `a` or `b`) leaves the
        // unfinished values before the only marker: taken as history.
        let mut bare = Log(log.0.clone());
        bare.batch(2, 2, 10, 15, &[("c", Some("1"))], true);
        let (wrong, ..) = bare.compacted().restore(Chain::default());
        assert_eq!(wrong, kv(&[("a", "2"), ("c", "1")]), "the gap this closes");
        // With it, the restored values follow the unfinished ones.
        log.claim(2, at.unwrap().cmd_offset, &chain, &state);
        log.batch(2, 2, 10, 15, &[("c", Some("1"))], true);
        let (compacted, at, _) = log.compacted().restore(Chain::default());
        assert_eq!(compacted, kv(&[("a", "1"), ("b", "1"), ("c", "1")]));
        assert_eq!(at.unwrap().cmd_offset, 15);
        // Uncompacted, the claim chains and changes nothing.
        let (whole, ..) = log.restore(Chain::default());
        assert_eq!(whole, compacted);
        // The redo's second batch rewrites `a` and `b`; compacted again,
        // the redo's values win.
        log.batch(2, 3, 15, 20, &[("a", Some("2")), ("b", None)], true);
        let (done, at, _) = log.compacted().restore(Chain::default());
        assert_eq!(done, kv(&[("a", "2"), ("c", "1")]));
        assert_eq!(at.unwrap().cmd_offset, 20);
    }

    #[test]
    fn a_batch_applied_after_a_claim_that_rewrote_its_keys_leaves_them_stale() {
        let mut log = Log(vec![]);
        log.batch(1, 1, 0, 10, &[("a", Some("1")), ("b", Some("1"))], true);
        // Owner 1 pauses inside batch 2; owner 2 restores at 10 and claims,
        // rewriting `a`; then owner 1's marker lands and chains on the claim.
        log.batch(1, 2, 10, 20, &[("a", Some("2"))], false);
        let (state, at, chain) = log.restore(Chain::default());
        log.claim(2, at.unwrap().cmd_offset, &chain, &state);
        log.0.push(marker(0, 10, &meta(20, 1, 2)));
        let (state, at, chain) = log.restore(Chain::default());
        assert_eq!((state, at.unwrap().cmd_offset), (kv(&[("a", "2"), ("b", "1")]), 20));
        // The claim's `a = 1` is the last record of `a`: the next claim
        // must rewrite it, or compaction would keep `a = 1`.
        assert_eq!(chain.unapplied_keys(), vec![(Cf::Idents, b"a".to_vec())]);
    }

    #[test]
    fn dropped_and_still_staged_batches_leave_their_keys_unapplied_but_history_does_not() {
        let mut log = Log(vec![]);
        log.batch(1, 1, 0, 10, &[("a", Some("1"))], true);
        log.batch(1, 1, 0, 10, &[("r", Some("1"))], true);
        log.batch(9, 5, 0, 10, &[("f", Some("9"))], true);
        log.batch(1, 2, 10, 20, &[("s", Some("2")), ("a", Some("2"))], false);
        let (_, _, chain) = log.restore(Chain::default());
        let keys: Vec<Vec<u8>> = chain.unapplied_keys().into_iter().map(|(_, k)| k).collect();
        assert_eq!(keys, vec![b"a".to_vec(), b"f".to_vec(), b"r".to_vec(), b"s".to_vec()]);
        // A compacted head applied as history leaves nothing staged.
        let mut head = Log(vec![]);
        head.0.push(record(0, BatchId { token: 1, seq: 3 }, Cf::Idents, b"h", Some(b"1")));
        head.batch(1, 9, 40, 50, &[("c", Some("1"))], true);
        let (_, _, chain) = head.restore(Chain::default());
        assert!(chain.unapplied_keys().is_empty());
    }

    fn kv(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<Vec<u8>, Vec<u8>> {
        pairs.iter().map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec())).collect()
    }

    #[test]
    fn chained_batches_apply_in_order_and_deletions_delete() {
        let mut log = Log(vec![]);
        log.batch(1, 1, 0, 10, &[("a", Some("1")), ("b", Some("1"))], true);
        log.batch(1, 2, 10, 20, &[("a", Some("2")), ("b", None)], true);
        let (state, at, chain) = log.restore(Chain::default());
        assert_eq!(state, kv(&[("a", "2")]));
        assert_eq!(at.unwrap().cmd_offset, 20);
        assert_eq!((chain.applied_batches, chain.dropped_batches), (2, 0));
    }

    #[test]
    fn a_batch_cut_short_by_a_crash_is_dropped_and_its_redo_applies() {
        let mut log = Log(vec![]);
        log.batch(1, 1, 0, 10, &[("a", Some("1"))], true);
        // Run 1 dies after writing part of batch 2 (no marker).
        log.batch(1, 2, 10, 20, &[("a", Some("2"))], false);
        let (state, at, _) = log.restore(Chain::default());
        assert_eq!(state, kv(&[("a", "1")]), "the unfinished batch is not applied");
        assert_eq!(at.unwrap().cmd_offset, 10);
        // The next owner restores at 10 and redoes it with other batch
        // boundaries: 10..15 then 15..20.
        log.batch(2, 1, 10, 15, &[("a", Some("2"))], true);
        log.batch(2, 2, 15, 20, &[("c", Some("1"))], true);
        let (state, at, chain) = log.restore(Chain::default());
        assert_eq!(state, kv(&[("a", "2"), ("c", "1")]));
        assert_eq!(at.unwrap().cmd_offset, 20);
        // The redo's `a` is the last record of `a` now: nothing to rewrite.
        assert!(chain.unapplied_keys().is_empty());
    }

    #[test]
    fn a_retried_delivery_and_a_fork_are_dropped() {
        let mut log = Log(vec![]);
        log.batch(1, 1, 0, 10, &[("a", Some("1"))], true);
        // The producer retried batch 1 whole: same id, marker does not chain.
        log.batch(1, 1, 0, 10, &[("a", Some("1"))], true);
        // A former owner (token 9) still writing after the partition moved:
        // it starts from 10 too; it comes first, so it is the chain.
        log.batch(9, 5, 10, 30, &[("z", Some("9"))], true);
        log.batch(2, 1, 10, 20, &[("a", Some("2"))], true);
        log.batch(2, 2, 20, 30, &[("b", Some("2"))], true);
        let (state, at, chain) = log.restore(Chain::default());
        assert_eq!(state, kv(&[("a", "1"), ("z", "9")]));
        assert_eq!(at.unwrap().batch, BatchId { token: 9, seq: 5 });
        assert_eq!((chain.applied_batches, chain.dropped_batches), (2, 3));
    }

    #[test]
    fn a_claim_landing_inside_another_writers_batch_does_not_cut_it() {
        let mut log = Log(vec![]);
        log.batch(1, 1, 0, 10, &[("a", Some("1"))], true);
        // Writer 1's next batch: its records, then (before its marker) a
        // claim by writer 2 chained on the same position, then its marker.
        log.batch(1, 2, 10, 20, &[("b", Some("1")), ("c", Some("1"))], false);
        log.0.push(marker(0, 10, &meta(10, 2, 1)));
        log.0.push(marker(0, 10, &meta(20, 1, 2)));
        let (state, at, _) = log.restore(Chain::default());
        assert_eq!(state, kv(&[("a", "1"), ("b", "1"), ("c", "1")]), "the whole batch applies");
        assert_eq!(at.unwrap().cmd_offset, 20);
    }

    #[test]
    fn a_compacted_head_is_taken_as_history() {
        let mut log = Log(vec![]);
        // What compaction left: older records without their markers, then
        // the latest marker of an earlier batch (from 40).
        log.0.push(record(0, BatchId { token: 1, seq: 3 }, Cf::Idents, b"a", Some(b"1")));
        log.0.push(record(0, BatchId { token: 1, seq: 7 }, Cf::Idents, b"b", Some(b"1")));
        log.batch(1, 9, 40, 50, &[("c", Some("1"))], true);
        log.batch(1, 10, 50, 60, &[("d", Some("1"))], false);
        let (state, at, _) = log.restore(Chain::default());
        assert_eq!(state, kv(&[("a", "1"), ("b", "1"), ("c", "1")]));
        assert_eq!(at.unwrap().cmd_offset, 50);
    }

    #[test]
    fn a_chain_continues_from_a_local_state() {
        let mut log = Log(vec![]);
        log.batch(1, 1, 0, 10, &[("a", Some("1"))], true);
        log.batch(2, 1, 10, 20, &[("b", Some("1"))], true);
        let (state, at, _) = log.restore(Chain::from(meta(10, 1, 1)));
        assert_eq!(state, kv(&[("b", "1")]), "only what came after the local state");
        assert_eq!(at.unwrap().cmd_offset, 20);
    }

    #[test]
    fn foreign_records_are_errors_not_panics() {
        let mut c = Chain::default();
        let id = BatchId { token: 1, seq: 1 }.to_bytes();
        assert_eq!(c.push(3, b"", None, Some(&id)).unwrap_err().reason, "empty key");
        assert_eq!(c.push(3, b"\x09k", None, Some(&id)).unwrap_err().reason, "unknown family tag");
        assert_eq!(c.push(3, b"\x00k", None, None).unwrap_err().reason, "no idgraph.batch header");
        assert_eq!(c.push(3, b"\x02k", Some(b"junk"), Some(&id)).unwrap_err().reason, "undecodable marker");
    }
}
