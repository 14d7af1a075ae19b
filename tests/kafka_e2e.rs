//! `idgraph run` against a real Kafka-protocol broker (tansu): the
//! compacted profiles topic equals `idgraph replay` of the same events
//! where no rule fires (where one does, the outcome depends on arrival
//! order, as replay's depends on its batch size: there the test holds the
//! engine to the accuracy bar instead); malformed records land in
//! `idgraph.rejects` with reason and source position; health, readiness
//! and metrics answer.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use idgraph_e2e::kafka::{engine_config, Engine, Tansu};
use idgraph_e2e::{avro_schema, generate, idgraph, ok, replay_and_profiles, shape, validate_record};
use idgraph_loadtest::gen::GenConfig;
use idgraph_loadtest::score::{score, Truth};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// Generator events (`shared`: with kiosks and family tablets); returns
/// the events file and the truth.
fn data(dir: &Path, persons: u64, events: u64, seed: u64, shared: bool) -> (std::path::PathBuf, String) {
    let f = dir.join("events.ndjson");
    let (kiosks, family_rate) = if shared { (4, 0.15) } else { (0, 0.0) };
    let truth = generate(&f, GenConfig { persons, events, seed, segment: true, kiosks, family_rate, ..Default::default() });
    (f, truth)
}

fn bad_records(dir: &Path) -> std::path::PathBuf {
    let f = dir.join("bad.ndjson");
    let big = format!("{{\"type\":\"track\",\"userId\":\"u-big\",\"properties\":{{\"pad\":\"{}\"}}}}", "x".repeat(1_100_000));
    let lines = ["{\"type\": \"track\", \"userId\": ".to_string(), "[1, 2, 3]".to_string(), big, r#"{"userId": "u-1"}"#.to_string()];
    std::fs::write(&f, lines.join("\n") + "\n").unwrap();
    f
}

/// Equal shapes, or a short report of the difference.
fn assert_same(got: &[(Vec<String>, u64)], want: &[(Vec<String>, u64)]) {
    let only_got: Vec<_> = got.iter().filter(|p| !want.contains(p)).collect();
    let only_want: Vec<_> = want.iter().filter(|p| !got.contains(p)).collect();
    assert!(
        only_got.is_empty() && only_want.is_empty(),
        "profiles differ from replay: {} vs {} profiles; only in topic ({}): {:?}; only in replay ({}): {:?}",
        got.len(),
        want.len(),
        only_got.len(),
        &only_got[..only_got.len().min(5)],
        only_want.len(),
        &only_want[..only_want.len().min(5)]
    );
}

#[test]
fn profiles_topic_equals_replay_and_bad_records_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let n = 5_000;
    let (events, _) = data(dir.path(), 600, n, 11, false);
    let broker = Tansu::start();
    broker.create_topic("touchpoints", 4);
    broker.produce("touchpoints", &events, 0);

    let state = dir.path().join("state");
    // A second input, canonical JSON, on its own topic.
    broker.create_topic("crm", 1);
    let cfg = engine_config(dir.path(), "e", &broker.brokers(), &state, "[[inputs]]\ntopic = \"crm\"\nformat = \"canonical\"\n");
    let engine = Engine::start(&cfg, &dir.path().join("engine.log"));
    assert_eq!(engine.get("/healthz").0, 200);
    engine.wait_quiescent(n, Duration::from_secs(120));
    assert_eq!(engine.get("/readyz").0, 200);
    let bad = bad_records(dir.path());
    broker.produce("touchpoints", &bad, 0);
    let crm = dir.path().join("crm.ndjson");
    std::fs::write(&crm, r#"{"event_id":"e-x","timestamp":"2026-03-01T10:00:00Z","identifiers":[{"type":"email","value":"a@b.co"},{"type":"shoe_size","value":"9"}]}"#).unwrap();
    broker.produce("crm", &crm, 0);
    engine.wait_quiescent(n + 5, Duration::from_secs(60));
    let metrics = engine.get("/metrics").1;
    for name in ["idgraph_ingest_events_total{topic=\"touchpoints\"}", "idgraph_core_merges_total", "idgraph_core_batch_seconds_bucket"] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    assert!(engine.stop(), "engine did not exit cleanly on SIGTERM");

    let expected = replay_and_profiles("segment", &dir.path().join("rs"), &dir.path().join("ro"), &[&events]);
    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("ro/summary.json")).unwrap()).unwrap();
    assert_eq!(summary["conflicts"], 0, "this data must not make a rule fire");
    assert_eq!(summary["identifiers_shared"], 0);
    // The engine's own state satisfies every invariant and equals replay.
    let check = ok(&idgraph(&["check", "--state", state.to_str().unwrap()]));
    assert!(check.contains("all invariants hold"), "{check}");
    assert_same(&shape(&idgraph_e2e::profiles(&state)), &shape(&expected));
    let got = broker.profiles();
    assert!(expected.len() > 100);
    assert_same(&shape(&got), &shape(&expected));
    let total: u64 = got.iter().map(|p| p["metrics"]["event_count"].as_u64().unwrap()).sum();
    assert_eq!(total, n);

    let rejects = broker.consume("idgraph.rejects", false);
    let mut reasons: BTreeMap<String, (String, i64)> = BTreeMap::new();
    for r in &rejects {
        let h = &r["headers"];
        let topic = h["idgraph.source.topic"].as_str().unwrap();
        assert!(topic == "touchpoints" || topic == "crm", "{topic}");
        let off: i64 = h["idgraph.source.offset"].as_str().unwrap().parse().unwrap();
        reasons
            .insert(h["idgraph.reason"].as_str().unwrap().to_string(), (h["idgraph.source.partition"].as_str().unwrap().to_string(), off));
        assert!(r["value"].is_string(), "original bytes kept");
    }
    for want in ["invalid_json", "not_an_object", "too_large", "missing_field", "unknown_identifier_type"] {
        assert!(reasons.contains_key(want), "no reject with reason {want}: {reasons:?}");
    }
    assert_eq!(rejects.len(), 5, "each bad record rejected once");
}

/// Avro input in the Confluent wire format, schemas from a local `.avsc`
/// by ID: the same profiles as replay of the JSON it was encoded from; a
/// record that is not Avro and one with an unknown schema ID are rejected
/// with their reason.
#[test]
fn avro_input_equals_replay_and_bad_avro_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let n = 2_000;
    let events = dir.path().join("events.ndjson");
    generate(&events, GenConfig { persons: 300, events: n, seed: 5, segment: false, kiosks: 0, family_rate: 0.0, ..Default::default() });
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/touchpoint.avsc");
    let schema = schema.to_str().unwrap();
    let broker = Tansu::start();
    broker.create_topic("touchpoints", 4);
    broker.create_topic("pos", 2);
    broker.produce_with("pos", &events, 0, &["--avro-schema", schema, "--schema-id", "3"]);
    let state = dir.path().join("state");
    let extra = format!("[[inputs]]\ntopic = \"pos\"\nformat = \"avro\"\navro-schemas = {{ \"3\" = \"{schema}\" }}\n");
    let cfg = engine_config(dir.path(), "e", &broker.brokers(), &state, &extra);
    let engine = Engine::start(&cfg, &dir.path().join("engine.log"));
    engine.wait_quiescent(n, Duration::from_secs(120));
    let one = dir.path().join("one.ndjson");
    std::fs::write(
        &one,
        "{\"event_id\":\"e-bad\",\"timestamp\":\"2026-03-01T10:00:00Z\",\"identifiers\":[{\"type\":\"email\",\"value\":\"a@b.co\"}]}\n",
    )
    .unwrap();
    broker.produce("pos", &one, 0);
    broker.produce_with("pos", &one, 0, &["--avro-schema", schema, "--schema-id", "99"]);
    engine.wait_quiescent(n + 2, Duration::from_secs(60));
    assert!(engine.stop());

    let expected = replay_and_profiles("canonical", &dir.path().join("rs"), &dir.path().join("ro"), &[&events]);
    assert_same(&shape(&broker.profiles()), &shape(&expected));
    let reasons: Vec<String> =
        broker.consume("idgraph.rejects", false).iter().map(|r| r["headers"]["idgraph.reason"].as_str().unwrap().to_string()).collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons.contains(&"not_avro".to_string()) && reasons.contains(&"unknown_schema_id".to_string()), "{reasons:?}");
    // Every record on the output topics validates against its schema.
    for (topic, file, min) in
        [("idgraph.profiles", "profile.avsc", 100), ("idgraph.lifecycle", "lifecycle.avsc", 100), ("idgraph.consent", "consent.avsc", 1)]
    {
        let schema = avro_schema(file);
        let mut n = 0;
        for r in broker.consume(topic, false) {
            let Some(v) = r["value"].as_str() else { continue }; // a tombstone
            let v: serde_json::Value = serde_json::from_str(v).unwrap();
            validate_record(&v, &schema).unwrap_or_else(|e| panic!("{topic}: {e}\n{v}"));
            n += 1;
        }
        assert!(n >= min, "{topic}: only {n} records");
    }
}

#[test]
fn a_config_error_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[kafka]\nbrokers = \"127.0.0.1:1\"\nbatch-size = 3\n").unwrap();
    let o = idgraph(&["run", "--config", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("kafka.batch-size"), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::write(&cfg, "[run]\nbatch-records = 0\n").unwrap();
    let o = idgraph(&["run", "--config", cfg.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("run.batch-records"), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn with_shared_devices_the_engine_meets_the_accuracy_bar() {
    let dir = tempfile::tempdir().unwrap();
    let n = 20_000;
    let (events, truth) = data(dir.path(), 3_000, n, 5, true);
    let broker = Tansu::start();
    broker.create_topic("touchpoints", 4);
    let state = dir.path().join("state");
    let cfg = engine_config(dir.path(), "e", &broker.brokers(), &state, "");
    let engine = Engine::start(&cfg, &dir.path().join("engine.log"));
    broker.produce("touchpoints", &events, 0);
    engine.wait_quiescent(n, Duration::from_secs(180));
    let m = engine.metrics();
    assert!(m["idgraph_core_identifiers_shared_total"] > 0.0, "shared identifiers must occur");
    assert!(m["idgraph_core_conflicts_total"] > 0.0, "conflicts must occur");
    assert!(engine.stop());
    let got = broker.profiles();
    let total: u64 = got.iter().map(|p| p["metrics"]["event_count"].as_u64().unwrap()).sum();
    assert_eq!(total, n, "every event counted exactly once");
    let lines: String = got.iter().map(|p| p.to_string() + "\n").collect();
    let s = score(&Truth::parse(&truth).unwrap(), &lines).unwrap();
    eprintln!("engine on tansu: {s:?}");
    assert!(s.precision >= 0.999, "precision {} (over-merges {:?})", s.precision, s.over_merges);
    assert!(s.recall >= 0.99, "recall {} (under-merges {:?})", s.recall, s.under_merges);
    let check = ok(&idgraph(&["check", "--state", state.to_str().unwrap()]));
    assert!(check.contains("all invariants hold"), "{check}");
}

#[test]
fn a_command_topic_with_another_partition_count_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Tansu::start();
    broker.create_topic("idgraph.cmd", 2);
    broker.create_topic("touchpoints", 1);
    let cfg = engine_config(dir.path(), "e", &broker.brokers(), &dir.path().join("state"), "");
    let o = idgraph(&["run", "--config", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("idgraph.cmd") && err.contains("state.partitions"), "{err}");
}
