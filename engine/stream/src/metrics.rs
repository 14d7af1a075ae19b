//! The engine's metrics (names and labels per `docs/METRICS.md`), rendered
//! in the Prometheus text format. Label values are bounded: topic names
//! from config, reason codes from a fixed list, partition numbers below P.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// Upper bounds (seconds) of the latency histograms.
const BUCKETS: [f64; 14] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    inf: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, secs: f64) {
        self.observe_n(secs, 1);
    }

    /// `n` observations of `secs`.
    pub fn observe_n(&self, secs: f64, n: u64) {
        match BUCKETS.iter().position(|b| secs <= *b) {
            Some(i) => self.counts[i].fetch_add(n, Ordering::Relaxed),
            None => self.inf.fetch_add(n, Ordering::Relaxed),
        };
        self.sum_us.fetch_add((secs * 1e6) as u64 * n, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut acc = 0;
        for (b, c) in BUCKETS.iter().zip(&self.counts) {
            acc += c.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {acc}");
        }
        acc += self.inf.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {acc}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_us.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {acc}");
    }
}

/// Events counted by their input time (ms since the epoch), in runs: an
/// envelope's events share one. Observed into a histogram as ages once
/// their outputs are acknowledged.
#[derive(Debug, Default)]
pub struct Origins(Vec<(i64, u64)>);

impl Origins {
    /// `n` events of input time `origin` (0: unknown, not counted).
    pub fn add(&mut self, origin: i64, n: u64) {
        if n == 0 || origin <= 0 {
            return;
        }
        match self.0.last_mut() {
            Some((o, k)) if *o == origin => *k += n,
            _ => self.0.push((origin, n)),
        }
    }

    pub fn observe(&self, h: &Histogram, now_ms: i64) {
        for &(origin, n) in &self.0 {
            h.observe_n((now_ms - origin).max(0) as f64 / 1000.0, n);
        }
    }
}

/// A counter family with one label.
#[derive(Debug, Default)]
pub struct Labeled(Mutex<BTreeMap<String, u64>>);

impl Labeled {
    pub fn add(&self, label: &str, n: u64) {
        if let Ok(mut m) = self.0.lock() {
            match m.get_mut(label) {
                Some(v) => *v += n,
                None => {
                    m.insert(label.to_string(), n);
                }
            }
        }
    }

    pub fn set(&self, label: &str, v: u64) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(label.to_string(), v);
        }
    }

    pub fn remove(&self, label: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(label);
        }
    }

    pub fn get(&self, label: &str) -> u64 {
        self.0.lock().ok().and_then(|m| m.get(label).copied()).unwrap_or(0)
    }

    fn render(&self, out: &mut String, name: &str, label: &str, kind: &str, help: &str) {
        self.render_as(out, name, label, kind, help, &|o, v| {
            let _ = write!(o, "{v}");
        });
    }

    /// Renders the family, each value written by `value`.
    fn render_as(&self, out: &mut String, name: &str, label: &str, kind: &str, help: &str, value: &dyn Fn(&mut String, u64)) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        if let Ok(m) = self.0.lock() {
            for (k, v) in m.iter() {
                let _ = write!(out, "{name}{{{label}=\"{k}\"}} ");
                value(out, *v);
                out.push('\n');
            }
        }
    }
}

/// Time counters with one label, kept in microseconds and rendered in
/// seconds.
#[derive(Debug, Default)]
pub struct Seconds(Labeled);

impl Seconds {
    pub fn add(&self, label: &str, d: std::time::Duration) {
        self.0.add(label, d.as_micros() as u64);
    }

    pub fn get(&self, label: &str) -> f64 {
        self.0.get(label) as f64 / 1e6
    }

    fn render(&self, out: &mut String, name: &str, label: &str, help: &str) {
        self.0.render_as(out, name, label, "counter", help, &|o, us| {
            let _ = write!(o, "{}", us as f64 / 1e6);
        });
    }
}

#[derive(Debug, Default)]
pub struct Metrics {
    pub ready: AtomicBool,
    pub events_in: Labeled,
    pub records_out: Labeled,
    pub rejects: Labeled,
    pub identifiers_dropped: Labeled,
    pub commands: AtomicU64,
    pub duplicates_dropped: AtomicU64,
    pub sequence_gaps: AtomicU64,
    pub profiles_created: AtomicU64,
    pub merges: AtomicU64,
    pub splits: AtomicU64,
    pub conflicts: AtomicU64,
    pub identifiers_shared: AtomicU64,
    pub events_unlinkable: AtomicU64,
    pub owner_cache_hits: AtomicU64,
    pub batches: AtomicU64,
    pub batch_seconds: Histogram,
    pub deliver_seconds: Histogram,
    pub event_to_output_seconds: Histogram,
    pub event_to_profile_seconds: Histogram,
    pub cmd_lag: Labeled,
    pub partitions_owned: AtomicU64,
    pub restored_records: AtomicU64,
    pub partitions_restoring: AtomicU64,
    /// Partition restores by mode (`continue`, `rebuild`).
    pub restores: Labeled,
    pub restore_seconds: Histogram,
    pub rebalances: Labeled,
    pub fenced: AtomicU64,
    pub outbox_pending: AtomicU64,
    /// Where the ingest and core loops spend their time, by phase.
    pub phase_seconds: Seconds,
}

/// Rejects the engine itself counts: a record on `idgraph.cmd` it did not
/// write, a foreign record on the changelog.
pub const ENGINE_REJECTS: [&str; 2] = ["undecodable_command", "foreign_changelog_record"];

impl Metrics {
    /// Metrics with every reject and drop reason present at 0, so that
    /// `rate()` and `absent()` work before the first one happens.
    pub fn new() -> Self {
        let m = Self::default();
        let rejects = idgraph_core::input::RejectReason::CODES.iter().chain(&crate::avro::AvroReject::CODES).chain(&ENGINE_REJECTS);
        for code in rejects {
            m.rejects.add(code, 0);
        }
        for r in idgraph_core::normalize::DropReason::ALL {
            m.identifiers_dropped.add(r.as_str(), 0);
        }
        m
    }

    /// Counts produced records by topic role.
    pub fn count_out<'a>(&self, recs: impl IntoIterator<Item = &'a crate::outbox::OutRecord>) {
        self.add_out(crate::outbox::count_by_dest(recs));
    }

    /// Adds counts of produced records, by [`crate::outbox::Dest`] index.
    pub fn add_out(&self, n: [u64; crate::outbox::Dest::ALL.len()]) {
        for (d, k) in crate::outbox::Dest::ALL.iter().zip(n) {
            if k > 0 {
                self.records_out.add(d.name(), k);
            }
        }
    }

    pub fn render(&self) -> String {
        let mut o = String::with_capacity(8192);
        let c = |o: &mut String, name: &str, help: &str, v: &AtomicU64, kind: &str| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}", v.load(Ordering::Relaxed));
        };
        self.events_in.render(&mut o, "idgraph_ingest_events_total", "topic", "counter", "Input records read, by input topic.");
        self.rejects.render(
            &mut o,
            "idgraph_ingest_rejects_total",
            "reason",
            "counter",
            "Input records sent to the rejects topic, by reason.",
        );
        self.identifiers_dropped.render(
            &mut o,
            "idgraph_ingest_identifiers_dropped_total",
            "reason",
            "counter",
            "Identifiers dropped from events (invalid or blocked), by reason.",
        );
        self.records_out.render(&mut o, "idgraph_output_records_total", "topic", "counter", "Records produced, by topic.");
        c(&mut o, "idgraph_core_commands_total", "Commands handled by the partitions.", &self.commands, "counter");
        c(&mut o, "idgraph_core_duplicates_dropped_total", "Commands dropped as already applied.", &self.duplicates_dropped, "counter");
        c(
            &mut o,
            "idgraph_core_sequence_gaps_total",
            "Envelopes whose commands start past the next expected sequence (lost records).",
            &self.sequence_gaps,
            "counter",
        );
        c(&mut o, "idgraph_core_profiles_created_total", "Profiles created.", &self.profiles_created, "counter");
        c(&mut o, "idgraph_core_merges_total", "Profiles merged into older ones.", &self.merges, "counter");
        c(&mut o, "idgraph_core_splits_total", "Profiles split.", &self.splits, "counter");
        c(&mut o, "idgraph_core_conflicts_total", "Identifiers dropped from a join by a rule.", &self.conflicts, "counter");
        c(&mut o, "idgraph_core_identifiers_shared_total", "Identifiers marked shared.", &self.identifiers_shared, "counter");
        c(
            &mut o,
            "idgraph_core_owner_cache_hits_total",
            "Identifier lookups the owner cache answered without reading the identifier's record.",
            &self.owner_cache_hits,
            "counter",
        );
        c(
            &mut o,
            "idgraph_core_events_unlinkable_total",
            "Events left with no identifier that can link (all shared, or given way under a rule); counted in no profile.",
            &self.events_unlinkable,
            "counter",
        );
        c(&mut o, "idgraph_core_batches_total", "Batches committed.", &self.batches, "counter");
        self.batch_seconds.render(
            &mut o,
            "idgraph_core_batch_seconds",
            "Time from the end of a batch's poll window to its outbox acknowledged.",
        );
        self.deliver_seconds.render(&mut o, "idgraph_outbox_deliver_seconds", "Time to produce a batch's outbox and have it acknowledged.");
        self.event_to_output_seconds.render(
            &mut o,
            "idgraph_core_event_to_output_seconds",
            "Time from the broker timestamp of the oldest routed-event envelope of a batch to its outputs acknowledged.",
        );
        self.event_to_profile_seconds.render(
            &mut o,
            "idgraph_core_event_to_profile_seconds",
            "Per event: time from its input record's timestamp to the acknowledgement of the first profile version that holds it.",
        );
        self.cmd_lag.render(
            &mut o,
            "idgraph_core_cmd_lag_records",
            "partition",
            "gauge",
            "Records of idgraph.cmd not yet consumed, by partition.",
        );
        c(&mut o, "idgraph_core_partitions_owned", "Partitions this process runs.", &self.partitions_owned, "gauge");
        c(
            &mut o,
            "idgraph_core_restored_records_total",
            "Changelog records read while restoring partitions.",
            &self.restored_records,
            "counter",
        );
        c(&mut o, "idgraph_core_partitions_restoring", "Partitions being restored now.", &self.partitions_restoring, "gauge");
        self.restores.render(
            &mut o,
            "idgraph_core_restores_total",
            "mode",
            "counter",
            "Partition restores: `continue` (local state plus the changelog after it) or `rebuild` (whole changelog).",
        );
        self.restore_seconds.render(&mut o, "idgraph_core_restore_seconds", "Time to restore a set of newly assigned partitions.");
        c(
            &mut o,
            "idgraph_core_fenced_total",
            "Times a partition stood by because another instance wrote its changelog.",
            &self.fenced,
            "counter",
        );
        self.rebalances.render(
            &mut o,
            "idgraph_core_rebalance_partitions_total",
            "change",
            "counter",
            "Core partitions assigned, revoked or lost by rebalances.",
        );
        c(
            &mut o,
            "idgraph_outbox_pending_records",
            "Records of the current batch produced but not yet acknowledged.",
            &self.outbox_pending,
            "gauge",
        );
        self.phase_seconds.render(
            &mut o,
            "idgraph_phase_seconds_total",
            "phase",
            "Time the ingest and core loops spent, by phase (`ingest_poll`, `ingest_parse`, `ingest_deliver`, `ingest_commit`, `core_poll`, `core_decode`, `core_apply`, `core_write`, `core_wait`, `core_deliver`, `core_markers`).",
        );
        let _ = writeln!(
            o,
            "# HELP idgraph_ready 1 once the first assignment of graph partitions is handled (restored, or standing by): /readyz answers 200.\n# TYPE idgraph_ready gauge\nidgraph_ready {}",
            u8::from(self.ready.load(Ordering::Relaxed))
        );
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reject_and_drop_reason_is_exported_from_the_start() {
        let t = Metrics::new().render();
        for code in ["invalid_json", "unknown_schema_id", "undecodable_command", "foreign_changelog_record", "unknown_identifier_type"] {
            assert!(t.contains(&format!("idgraph_ingest_rejects_total{{reason=\"{code}\"}} 0")), "{code}: {t}");
        }
        assert!(t.contains("idgraph_ingest_identifiers_dropped_total{reason=\"invalid_phone\"} 0"), "{t}");
    }

    #[test]
    fn renders_counters_labels_and_cumulative_buckets() {
        let m = Metrics::default();
        m.events_in.add("touchpoints", 3);
        m.rejects.add("malformed_json", 1);
        m.batch_seconds.observe(0.003);
        m.batch_seconds.observe(0.2);
        m.batch_seconds.observe(100.0);
        let t = m.render();
        assert!(t.contains("idgraph_ingest_events_total{topic=\"touchpoints\"} 3"), "{t}");
        assert!(t.contains("idgraph_ingest_rejects_total{reason=\"malformed_json\"} 1"));
        assert!(t.contains("idgraph_core_batch_seconds_bucket{le=\"0.005\"} 1"));
        assert!(t.contains("idgraph_core_batch_seconds_bucket{le=\"0.25\"} 2"));
        assert!(t.contains("idgraph_core_batch_seconds_bucket{le=\"+Inf\"} 3"));
        assert!(t.contains("idgraph_core_batch_seconds_count 3"));
        assert!(t.contains("idgraph_ready 0"));
    }

    #[test]
    fn every_metric_is_documented_and_every_documented_one_rendered() {
        let doc = include_str!("../../../docs/METRICS.md");
        let documented: std::collections::BTreeSet<&str> =
            doc.lines().filter_map(|l| l.strip_prefix("| `")?.split('`').next()).filter(|n| n.starts_with("idgraph_")).collect();
        let text = Metrics::default().render();
        let rendered: std::collections::BTreeSet<&str> =
            text.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next()).collect();
        assert!(rendered.len() >= 30 && rendered.contains("idgraph_core_event_to_profile_seconds"), "{rendered:?}");
        let undocumented: Vec<_> = rendered.difference(&documented).collect();
        assert!(undocumented.is_empty(), "rendered but not in docs/METRICS.md: {undocumented:?}");
        let unrendered: Vec<_> = documented.difference(&rendered).collect();
        assert!(unrendered.is_empty(), "in docs/METRICS.md but not rendered: {unrendered:?}");
    }

    #[test]
    fn origins_count_each_event_at_its_age() {
        let m = Metrics::default();
        let mut o = Origins::default();
        o.add(1_000, 2);
        o.add(1_000, 1);
        o.add(0, 7);
        o.add(760, 2);
        o.add(900, 0);
        assert_eq!(o.0, vec![(1_000, 3), (760, 2)]);
        o.observe(&m.event_to_profile_seconds, 1_040);
        let t = m.render();
        assert!(t.contains("idgraph_core_event_to_profile_seconds_bucket{le=\"0.05\"} 3"), "{t}");
        assert!(t.contains("idgraph_core_event_to_profile_seconds_bucket{le=\"0.25\"} 3"), "{t}");
        assert!(t.contains("idgraph_core_event_to_profile_seconds_bucket{le=\"0.5\"} 5"), "{t}");
        assert!(t.contains("idgraph_core_event_to_profile_seconds_count 5"), "{t}");
        assert!(t.contains("idgraph_core_event_to_profile_seconds_sum 0.68"), "{t}");
    }

    #[test]
    fn phase_times_render_in_seconds() {
        let m = Metrics::default();
        m.phase_seconds.add("core_apply", std::time::Duration::from_millis(1500));
        m.phase_seconds.add("core_apply", std::time::Duration::from_micros(250));
        let t = m.render();
        assert!(t.contains("idgraph_phase_seconds_total{phase=\"core_apply\"} 1.50025"), "{t}");
        assert!((m.phase_seconds.get("core_apply") - 1.50025).abs() < 1e-9);
    }

    #[test]
    fn counts_produced_records_by_topic_role() {
        use crate::outbox::{Dest, OutRecord};
        let m = Metrics::default();
        let rec = |dest| OutRecord { dest, partition: None, key: None, value: None, headers: vec![] };
        m.count_out(&[rec(Dest::Cmd), rec(Dest::Profiles), rec(Dest::Profiles), rec(Dest::Rejects)]);
        assert_eq!((m.records_out.get("cmd"), m.records_out.get("profiles"), m.records_out.get("rejects")), (1, 2, 1));
        assert_eq!(m.records_out.get("lifecycle"), 0);
    }
}
