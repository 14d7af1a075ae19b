//! Every schema in `schemas/` parses, and every record idgraph writes to
//! its output topics (rendered by the code `run` shares with `replay`)
//! validates against its schema strictly and encodes as Avro; the
//! generator's canonical input validates against the touchpoint schema.
//! (`kafka_e2e` checks the records read back from the topics too.)

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use apache_avro::Schema;
use idgraph_e2e::{avro_schema as schema, generate, idgraph, ok, validate_record};
use idgraph_loadtest::gen::GenConfig;
use idgraph_stream::avro::check_json;
use std::path::{Path, PathBuf};

fn schemas_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas")
}

/// Checks each NDJSON line of `file` against `schema`; returns the count.
fn validate_lines(file: &Path, schema: &Schema) -> usize {
    let text = std::fs::read_to_string(file).unwrap();
    let mut n = 0;
    for (i, line) in text.lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v["tombstone"] == true {
            // Replay's file form of a null value on the topic.
            continue;
        }
        if let Err(e) = validate_record(&v, schema) {
            panic!("{}:{}: {e}\n{line}", file.display(), i + 1);
        }
        n += 1;
    }
    n
}

#[test]
fn every_schema_parses() {
    let mut n = 0;
    for e in std::fs::read_dir(schemas_dir()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "avsc") {
            schema(p.file_name().unwrap().to_str().unwrap());
            n += 1;
        }
    }
    assert!(n >= 6, "touchpoint, profile, lifecycle, consent, rejects, internal: found {n}");
}

#[test]
fn every_output_record_validates_against_its_schema() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.ndjson");
    // Kiosks, family tablets and junk: conflicts, shared identifiers and
    // merges give every lifecycle type the data can produce; consent too.
    generate(
        &events,
        GenConfig { persons: 800, events: 8_000, seed: 17, segment: false, kiosks: 3, family_rate: 0.2, ..Default::default() },
    );
    assert!(validate_lines(&events, &schema("touchpoint.avsc")) == 8_000);
    let (state, out) = (dir.path().join("s"), dir.path().join("o"));
    ok(&idgraph(&[
        "replay",
        "--format",
        "canonical",
        "--state",
        state.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        events.to_str().unwrap(),
    ]));
    let profiles = validate_lines(&out.join("profiles.ndjson"), &schema("profile.avsc"));
    let lifecycle = validate_lines(&out.join("lifecycle.ndjson"), &schema("lifecycle.avsc"));
    let consent = validate_lines(&out.join("consent.ndjson"), &schema("consent.avsc"));
    assert!(profiles > 100 && lifecycle > 100 && consent > 10, "{profiles} profiles, {lifecycle} lifecycle, {consent} consent");
    let kinds: std::collections::BTreeSet<String> = std::fs::read_to_string(out.join("lifecycle.ndjson"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["type"].as_str().unwrap().to_string())
        .collect();
    for k in ["created", "merged", "conflict", "identifier_shared"] {
        assert!(kinds.contains(k), "no {k} lifecycle event validated: {kinds:?}");
    }
    // The strict check has teeth: an unknown field fails.
    let mut bad: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(out.join("consent.ndjson")).unwrap().lines().next().unwrap()).unwrap();
    bad["colour"] = "red".into();
    assert!(check_json(&bad, &schema("consent.avsc")).is_err());
}
