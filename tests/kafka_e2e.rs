//! `idgraph run` against a real Kafka-protocol broker (tansu): the
//! compacted profiles topic equals `idgraph replay` of the same events
//! where no rule fires (where one does, the outcome depends on arrival
//! order, as replay's depends on its batch size: there the test holds the
//! engine to the accuracy bar instead); malformed records land in
//! `idgraph.rejects` with reason and source position; health, readiness
//! and metrics answer. Avro outputs (local schema IDs, or a registry):
//! every record decodes from the wire format with the schema of its ID and
//! validates against it, and the profiles are those of the JSON path.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use apache_avro::types::Value as Avro;
use apache_avro::Schema;
use idgraph_e2e::kafka::{engine_config, free_port, Engine, Tansu};
use idgraph_e2e::registry::Registry;
use idgraph_e2e::{
    assert_no_rule_fired, avro_schema, generate, idgraph, ok, replay_and_profiles, shape, stderr, validate_record, work_dir,
};
use idgraph_loadtest::gen::GenConfig;
use idgraph_loadtest::score::{score, Truth};
use idgraph_stream::avro::{avro_form, check_json, json_form, split_wire};
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
    for name in [
        "idgraph_ingest_events_total{topic=\"touchpoints\"}",
        "idgraph_core_merges_total",
        "idgraph_core_owner_cache_hits_total",
        "idgraph_core_batch_seconds_bucket",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    // Every event folded into a profile is observed once, at its age.
    assert_eq!(engine.metrics()["idgraph_core_event_to_profile_seconds_count"] as u64, n);
    assert!(engine.stop(), "engine did not exit cleanly on SIGTERM");

    let expected = replay_and_profiles("segment", &dir.path().join("rs"), &dir.path().join("ro"), &[&events]);
    assert_no_rule_fired(&dir.path().join("ro"));
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
    // Every JSON record on the output topics validates against its schema.
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

/// What the four output topics hold when their values are Avro.
struct AvroOutputs {
    /// The compacted profiles, decoded to JSON.
    profiles: Vec<serde_json::Value>,
    tombstones: usize,
    lifecycle: Vec<serde_json::Value>,
    /// (reason header, value) of each reject.
    rejects: Vec<(String, Vec<u8>)>,
}

/// Reads every record of the four output topics: each is in the wire
/// format with the ID `ids` gives its topic, decodes with `schema(ID)`,
/// and its JSON form validates against it strictly (rejects: a `bytes`
/// datum); only profiles have tombstones.
fn read_avro_outputs(broker: &Tansu, ids: [(&str, u32); 4], schema: &dyn Fn(u32) -> Schema) -> AvroOutputs {
    let mut out = AvroOutputs { profiles: vec![], tombstones: 0, lifecycle: vec![], rejects: vec![] };
    for (role, id) in ids {
        let topic = format!("idgraph.{role}");
        for rec in broker.avro_records(&topic, false, schema) {
            let Some((r, s)) = rec else {
                assert_eq!(role, "profiles", "a null value on {topic}");
                out.tombstones += 1;
                continue;
            };
            assert_eq!(r.schema_id, id, "{topic}: the schema ID of its values");
            if role == "rejects" {
                let Avro::Bytes(b) = r.value else { panic!("{topic}: not a bytes datum") };
                out.rejects.push((r.headers["idgraph.reason"].as_str().unwrap().to_string(), b));
                continue;
            }
            let json = json_form(r.value, &s).unwrap();
            check_json(&avro_form(&json, &s), &s).unwrap_or_else(|e| panic!("{topic}: {e}\n{json}"));
            if role == "lifecycle" {
                out.lifecycle.push(json);
            }
        }
    }
    for rec in broker.avro_records("idgraph.profiles", true, schema) {
        let (r, s) = rec.expect("the compacted view has no tombstones");
        out.profiles.push(json_form(r.value, &s).unwrap());
    }
    out
}

/// Avro outputs with a schema registry: at start-up the engine registers
/// the four output schemas (those of `schemas/`) under `<topic>-value`;
/// every output record carries the ID the registry gave, decodes with the
/// registered schema and validates against it; the decoded profiles are
/// exactly the engine's state and the same as replay's; tombstones stay
/// null; rejects hold the original bytes.
#[test]
fn avro_outputs_with_a_registry_decode_validate_and_equal_replay() {
    let dir = tempfile::tempdir().unwrap();
    let n = 5_000;
    let (events, _) = data(dir.path(), 600, n, 11, false);
    let registry = Registry::start();
    let broker = Tansu::start();
    broker.create_topic("touchpoints", 4);
    broker.produce("touchpoints", &events, 0);
    let state = dir.path().join("state");
    let outputs = format!("[outputs]\nformat = \"avro\"\nschema-registry = \"{}\"\n", registry.url);
    let cfg = engine_config(dir.path(), "e", &broker.brokers(), &state, &outputs);
    let engine = Engine::start(&cfg, &dir.path().join("engine.log"));
    engine.wait_quiescent(n, Duration::from_secs(120));
    let bad = bad_records(dir.path());
    broker.produce("touchpoints", &bad, 0);
    engine.wait_quiescent(n + 4, Duration::from_secs(60));
    assert!(engine.stop(), "engine did not exit cleanly on SIGTERM");

    let registered = registry.registered();
    let subjects: Vec<&str> = registered.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(subjects, ["idgraph.profiles-value", "idgraph.lifecycle-value", "idgraph.consent-value", "idgraph.rejects-value"]);
    assert!(registered.iter().all(|r| r.2 == "application/vnd.schemaregistry.v1+json"), "{registered:?}");
    let mut ids = [("profiles", 0), ("lifecycle", 0), ("consent", 0), ("rejects", 0)];
    for ((role, id), (file, reg)) in
        ids.iter_mut().zip(["profile.avsc", "lifecycle.avsc", "consent.avsc", "rejects.avsc"].iter().zip(&registered))
    {
        *id = reg.1;
        assert!(registry.schema(*id).unwrap() == avro_schema(file), "{role}: the registered schema is schemas/{file}");
    }
    let out = read_avro_outputs(&broker, ids, &|id| registry.schema(id).unwrap_or_else(|| panic!("schema ID {id} not registered")));

    let mut from_state = idgraph_e2e::profiles(&state);
    let mut got = out.profiles;
    let by_id = |a: &serde_json::Value, b: &serde_json::Value| a["profile_id"].as_str().cmp(&b["profile_id"].as_str());
    from_state.sort_by(by_id);
    got.sort_by(by_id);
    assert!(got.len() > 100, "{} profiles", got.len());
    assert!(got == from_state, "the decoded profiles are not those of the engine's state (`idgraph profiles`)");
    let expected = replay_and_profiles("segment", &dir.path().join("rs"), &dir.path().join("ro"), &[&events]);
    assert_no_rule_fired(&dir.path().join("ro"));
    assert_same(&shape(&got), &shape(&expected));
    let merged = out.lifecycle.iter().filter(|l| l["type"] == "merged").count();
    assert!(merged > 0 && out.tombstones > 0, "{merged} merges, {} tombstones", out.tombstones);

    let lines: Vec<Vec<u8>> = std::fs::read(&bad).unwrap().split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec).collect();
    let mut reasons: Vec<&str> = out.rejects.iter().map(|(r, _)| r.as_str()).collect();
    reasons.sort_unstable();
    assert_eq!(reasons, ["invalid_json", "missing_field", "not_an_object", "too_large"]);
    for (reason, value) in &out.rejects {
        assert!(lines.contains(value), "{reason}: the reject's value is not the original record");
    }
}

#[test]
fn a_registry_that_cannot_be_reached_stops_start_up_naming_it_and_the_subject() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{}", free_port());
    let cfg = engine_config(
        dir.path(),
        "e",
        "127.0.0.1:1",
        &dir.path().join("state"),
        &format!("[outputs]\nformat = \"avro\"\nschema-registry = \"{url}\"\n"),
    );
    let o = idgraph(&["run", "--config", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains(&url) && err.contains("idgraph.profiles-value"), "{err}");
}

/// Avro input in the Confluent wire format, schemas from a local `.avsc`
/// by ID, and Avro outputs with local schema IDs: every output record
/// decodes with the schema of its ID and validates against it; the same
/// profiles as replay of the JSON the input was encoded from; a record
/// that is not Avro and one with an unknown schema ID are rejected with
/// their reason and their original bytes.
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
    let extra = format!(
        "[[inputs]]\ntopic = \"pos\"\nformat = \"avro\"\navro-schemas = {{ \"3\" = \"{schema}\" }}\n\
         [outputs]\nformat = \"avro\"\nschema-ids = {{ profiles = 11, lifecycle = 12, consent = 13, rejects = 14 }}\n"
    );
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

    let ids = [("profiles", 11), ("lifecycle", 12), ("consent", 13), ("rejects", 14)];
    let files = [(11, "profile.avsc"), (12, "lifecycle.avsc"), (13, "consent.avsc"), (14, "rejects.avsc")];
    let out = read_avro_outputs(&broker, ids, &|id| avro_schema(files.iter().find(|f| f.0 == id).unwrap().1));
    let expected = replay_and_profiles("canonical", &dir.path().join("rs"), &dir.path().join("ro"), &[&events]);
    assert_no_rule_fired(&dir.path().join("ro"));
    assert_same(&shape(&out.profiles), &shape(&expected));
    assert!(out.lifecycle.len() >= 100, "only {} lifecycle records", out.lifecycle.len());
    let mut rejects = out.rejects;
    rejects.sort();
    let reasons: Vec<&str> = rejects.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(reasons, ["not_avro", "unknown_schema_id"]);
    assert_eq!(rejects[0].1, std::fs::read(&one).unwrap().trim_ascii_end(), "the original JSON line");
    assert_eq!(split_wire(&rejects[1].1).map(|w| w.0), Some(99), "the original Avro record");
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
    let tmp = tempfile::tempdir().unwrap();
    let dir = &work_dir(&tmp);
    let n = 20_000;
    let (events, truth) = data(dir, 3_000, n, 5, true);
    let broker = Tansu::start();
    broker.create_topic("touchpoints", 4);
    let state = dir.join("state");
    let cfg = engine_config(dir, "e", &broker.brokers(), &state, "");
    let engine = Engine::start(&cfg, &dir.join("engine.log"));
    broker.produce("touchpoints", &events, 0);
    engine.wait_quiescent(n, Duration::from_secs(180));
    // Quiescence is judged from metrics; a command still on its way through
    // the broker can outlast it. Wait, before stopping the engine, until the
    // profiles account for every event: late converges, lost does not and
    // fails below.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let (got, m) = loop {
        let (got, m) = (broker.profiles(), engine.metrics());
        let total: u64 = got.iter().map(|p| p["metrics"]["event_count"].as_u64().unwrap()).sum();
        if total + m["idgraph_core_events_unlinkable_total"] as u64 == n || std::time::Instant::now() > deadline {
            break (got, m);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(m["idgraph_core_identifiers_shared_total"] > 0.0, "shared identifiers must occur");
    assert!(m["idgraph_core_conflicts_total"] > 0.0, "conflicts must occur");
    assert!(engine.stop());
    let total: u64 = got.iter().map(|p| p["metrics"]["event_count"].as_u64().unwrap()).sum();
    // An event whose only identifiers are shared devices is applied to no
    // profile; whether a kiosk's anonymous event arrives before or after the
    // device became shared depends on timing across partitions; so does
    // whether a profile that only ever saw the kiosk is emptied (its
    // events then count unlinkable: before that rule, 3 events of 20,000
    // ended in no output about one run in ten).
    let unlinkable = m["idgraph_core_events_unlinkable_total"] as u64;
    // If events go missing, which side lost them: the engine's own state
    // or its profiles topic; lost internal envelopes; commands dropped as
    // already applied.
    let in_state: u64 = ok(&idgraph(&["profiles", "--state", state.to_str().unwrap()]))
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["metrics"]["event_count"].as_u64().unwrap())
        .sum();
    eprintln!(
        "unlinkable events: {unlinkable}; sequence gaps: {}; duplicates dropped: {}; events in the state's profiles: {in_state}",
        m["idgraph_core_sequence_gaps_total"], m["idgraph_core_duplicates_dropped_total"]
    );
    assert!(unlinkable * 1000 <= n, "{unlinkable} unlinkable events of {n}");
    assert_eq!(total + unlinkable, n, "every event counted exactly once, in a profile or as unlinkable ({unlinkable})");
    let lines: String = got.iter().map(|p| p.to_string() + "\n").collect();
    let s = score(&Truth::parse(&truth).unwrap(), &lines).unwrap();
    eprintln!("engine on tansu: {s:?}");
    assert!(s.precision >= 0.999, "precision {} (over-merges {:?})", s.precision, s.over_merges);
    assert!(s.recall >= 0.99, "recall {} (under-merges {:?})", s.recall, s.under_merges);
    let check = ok(&idgraph(&["check", "--state", state.to_str().unwrap()]));
    assert!(check.contains("all invariants hold"), "{check}");
}

/// Start-up stops, naming the topic and `state.partitions`, when `topic`
/// exists with another partition count than the state's.
fn start_up_refuses_partition_count_of(topic: &str) {
    let dir = tempfile::tempdir().unwrap();
    let broker = Tansu::start();
    broker.create_topic(topic, 2);
    broker.create_topic("touchpoints", 1);
    let cfg = engine_config(dir.path(), "e", &broker.brokers(), &dir.path().join("state"), "");
    let o = idgraph(&["run", "--config", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(topic) && err.contains("state.partitions"), "{err}");
}

#[test]
fn a_command_topic_with_another_partition_count_stops_start_up() {
    start_up_refuses_partition_count_of("idgraph.cmd");
}

#[test]
fn a_changelog_with_another_partition_count_stops_start_up() {
    start_up_refuses_partition_count_of("idgraph.changelog");
}
