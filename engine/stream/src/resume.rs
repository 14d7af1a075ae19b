//! Resuming a partition at an exact offset, on any broker.
//!
//! tansu 0.6 answers a fetch from an offset inside a record batch with the
//! *next* batch: the rest of the batch is silently skipped (and its high
//! watermark is the last batch's base offset + 1). A consumer that resumes
//! where it stopped (after a crash, a restart, a rebalance) would lose
//! records. So on resume at offset `want`, if the first record seen is past
//! `want`, or nothing arrives within [`PATIENCE`] (the offset is inside the
//! last batch: tansu returns nothing at all), the partition is sought back
//! (`want - 1`, `- 2`, `- 4`, ... down to the beginning) until a fetch starts
//! at or before `want`; records before `want` are skipped. A real gap (compaction, transaction markers)
//! is accepted once a fetch from at or before `want` jumps over it. On a
//! broker without the defect the first record is `want` and nothing extra
//! happens.
//!
//! The same defect strikes in the middle of a partition whenever the
//! client fetches from inside a batch (after a rebalance restarts its
//! fetcher at the application's position): so every partition's last
//! accepted offset is kept, and a record past `last + 1` makes the
//! partition resume at `last + 1` the same way.

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::Offset;
use std::time::{Duration, Instant};

/// How long a resumed partition may stay silent before it is sought back.
pub const PATIENCE: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Hand the record to the caller.
    Accept,
    /// Drop it (before the resume point, or fetched before a seek back).
    Skip,
}

#[derive(Debug)]
struct Probe {
    topic: String,
    partition: i32,
    want: i64,
    step: i64,
    /// A fetch started at or before `want`.
    found: bool,
    /// The last seek went to the beginning.
    at_start: bool,
    since: Instant,
}

#[derive(Debug, Default)]
pub struct Resume {
    probes: Vec<Probe>,
    /// The last accepted offset per (topic, partition).
    last: Vec<(String, i32, i64)>,
    /// Seeks made so far (a metric of how often the broker skipped).
    pub seeks: u64,
    /// Records that arrived past the next expected offset.
    pub jumps: u64,
    /// Gaps between consecutive records are accepted (a compacted topic
    /// read by a consumer whose fetches no rebalance restarts).
    pub gaps_ok: bool,
}

impl Resume {
    /// The next record of `topic/partition` should be `want`.
    pub fn expect(&mut self, topic: &str, partition: i32, want: i64) {
        self.forget(topic, partition);
        if want > 0 {
            self.expect_probe(topic, partition, want);
        }
    }

    pub fn forget(&mut self, topic: &str, partition: i32) {
        self.probes.retain(|p| !(p.partition == partition && p.topic == topic));
        self.last.retain(|(t, p, _)| !(*p == partition && t == topic));
    }

    /// Whether the record at `offset` is the next one of its partition;
    /// `Skip` drops it (a repeat, or a record past a gap the partition is
    /// being sought back over).
    pub fn check<C: ConsumerContext>(&mut self, c: &BaseConsumer<C>, topic: &str, partition: i32, offset: i64) -> Verdict {
        if self.gaps_ok {
            return self.check_probe(c, topic, partition, offset);
        }
        let probed = self.probes.iter().any(|p| p.partition == partition && p.topic == topic);
        let v = self.check_probe(c, topic, partition, offset);
        if v == Verdict::Skip {
            return v;
        }
        let Some(i) = self.last.iter().position(|(t, p, _)| *p == partition && t == topic) else {
            self.last.push((topic.to_string(), partition, offset));
            return Verdict::Accept;
        };
        let last = self.last[i].2;
        if probed || offset == last + 1 {
            // Next in line, or placed by a probe (maybe past a real gap).
            self.last[i].2 = offset;
            return Verdict::Accept;
        }
        if offset <= last {
            return Verdict::Skip;
        }
        self.jumps += 1;
        tracing::warn!(topic, partition, want = last + 1, got = offset, "the broker skipped records; seeking back");
        self.expect_probe(topic, partition, last + 1);
        let v = self.check_probe(c, topic, partition, offset);
        if v == Verdict::Accept {
            self.last[i].2 = offset;
        }
        v
    }

    fn expect_probe(&mut self, topic: &str, partition: i32, want: i64) {
        self.probes.retain(|p| !(p.partition == partition && p.topic == topic));
        self.probes.push(Probe {
            topic: topic.to_string(),
            partition,
            want,
            step: 1,
            found: false,
            at_start: false,
            since: Instant::now(),
        });
    }

    fn check_probe<C: ConsumerContext>(&mut self, c: &BaseConsumer<C>, topic: &str, partition: i32, offset: i64) -> Verdict {
        if self.probes.is_empty() {
            return Verdict::Accept;
        }
        let Some(i) = self.probes.iter().position(|p| p.partition == partition && p.topic == topic) else { return Verdict::Accept };
        let p = &mut self.probes[i];
        if offset < p.want {
            p.found = true;
            return Verdict::Skip;
        }
        if offset == p.want || p.found || p.at_start {
            if offset > p.want {
                tracing::info!(
                    topic,
                    partition,
                    from = p.want,
                    to = offset,
                    "offsets missing on the broker (compaction or markers); resumed after them"
                );
            }
            self.probes.swap_remove(i);
            return Verdict::Accept;
        }
        if Self::seek_back(c, p) {
            self.seeks += 1;
            Verdict::Skip
        } else {
            self.probes.swap_remove(i);
            Verdict::Accept
        }
    }

    /// Seeks back the partitions that stayed silent past [`PATIENCE`] since
    /// their resume (or last seek) without a fetch at or before `want`.
    pub fn tick<C: ConsumerContext>(&mut self, c: &BaseConsumer<C>) {
        for p in &mut self.probes {
            if !p.found && !p.at_start && p.since.elapsed() >= PATIENCE && Self::seek_back(c, p) {
                self.seeks += 1;
            }
        }
    }

    fn seek_back<C: ConsumerContext>(c: &BaseConsumer<C>, p: &mut Probe) -> bool {
        let target = (p.want - p.step).max(0);
        p.at_start = target == 0;
        p.step = p.step.saturating_mul(2);
        p.since = Instant::now();
        match c.seek(&p.topic, p.partition, Offset::Offset(target), Duration::from_secs(5)) {
            Ok(()) => {
                // Routine on brokers that skip the rest of a batch (and on
                // idle partitions, where nothing arrives): counted, not
                // logged at info (a restart walked every idle input
                // partition back to 0, a line per step).
                tracing::debug!(topic = %p.topic, partition = p.partition, want = p.want, target, "no record at the resume offset; sought back");
                true
            }
            Err(e) => {
                tracing::warn!(topic = %p.topic, partition = p.partition, error = %e, "seek back failed; resuming where the broker delivers");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A consumer that never connects: seeks fail, so a probe gives up and
    /// accepts (what a broker without records to seek to would give).
    fn consumer() -> BaseConsumer {
        crate::client::consumer(&crate::client::Cluster::plain("127.0.0.1:1"), "resume-test").create().unwrap()
    }

    #[test]
    fn in_order_records_pass_and_repeats_are_dropped() {
        let c = consumer();
        let mut r = Resume::default();
        for o in 5..10 {
            assert_eq!(r.check(&c, "t", 0, o), Verdict::Accept);
        }
        assert_eq!(r.check(&c, "t", 0, 7), Verdict::Skip, "a repeat");
        assert_eq!(r.check(&c, "t", 1, 3), Verdict::Accept, "partitions are separate");
        assert_eq!(r.jumps, 0);
    }

    #[test]
    fn a_jump_is_noticed_and_the_partition_moves_on_when_no_seek_helps() {
        let c = consumer();
        let mut r = Resume::default();
        assert_eq!(r.check(&c, "t", 0, 1), Verdict::Accept);
        // The seek back fails here, so the record is taken as the next.
        assert_eq!(r.check(&c, "t", 0, 5), Verdict::Accept);
        assert_eq!(r.jumps, 1);
        assert_eq!(r.check(&c, "t", 0, 6), Verdict::Accept, "no second jump once placed");
        assert_eq!(r.jumps, 1);
    }

    #[test]
    fn expect_and_forget_reset_the_position() {
        let c = consumer();
        let mut r = Resume::default();
        assert_eq!(r.check(&c, "t", 0, 8), Verdict::Accept);
        r.forget("t", 0);
        assert_eq!(r.check(&c, "t", 0, 2), Verdict::Accept, "a new start after forget");
        r.expect("t", 0, 0);
        assert_eq!(r.check(&c, "t", 0, 0), Verdict::Accept);
    }
}
