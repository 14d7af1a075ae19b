//! `idgraph run` against a broker it reaches only through TLS
//! (`[kafka.client]` properties): the profiles equal replay's, and a
//! client without TLS gets nothing through.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use idgraph_e2e::kafka::{engine_config, tool, Engine, Tansu};
use idgraph_e2e::{assert_no_rule_fired, assert_same_shape, generate, replay_and_profiles};
use idgraph_loadtest::gen::GenConfig;
use std::process::Command;
use std::time::Duration;

#[test]
fn the_engine_runs_against_a_broker_behind_tls() {
    let dir = tempfile::tempdir().unwrap();
    let n = 2_000;
    let events = dir.path().join("events.ndjson");
    generate(&events, GenConfig { persons: 300, events: n, seed: 5, segment: true, kiosks: 0, family_rate: 0.0, ..Default::default() });
    let broker = Tansu::start_tls(dir.path());
    broker.create_topic("touchpoints", 4);
    broker.produce("touchpoints", &events, 0);

    let state = dir.path().join("state");
    let cfg = engine_config(dir.path(), "e", &broker.brokers(), &state, &broker.client_section());
    let engine = Engine::start(&cfg, &dir.path().join("engine.log"));
    engine.wait_quiescent(n, Duration::from_secs(120));
    assert_eq!(engine.get("/readyz").0, 200);
    assert!(engine.stop(), "engine did not exit cleanly on SIGTERM");

    let expected = replay_and_profiles("segment", &dir.path().join("rs"), &dir.path().join("ro"), &[&events]);
    assert_no_rule_fired(&dir.path().join("ro"));
    let got = broker.profiles();
    assert!(expected.len() > 50);
    assert_same_shape(&got, &expected, "profiles read over TLS");
    let total: u64 = got.iter().map(|p| p["metrics"]["event_count"].as_u64().unwrap()).sum();
    assert_eq!(total, n);

    // Without TLS the front lets nothing through: the plain client never
    // reads the topic's metadata.
    let o = Command::new(tool("idgraph-consume"))
        .args(["--brokers", &broker.brokers(), "--topic", "idgraph.profiles", "--timeout", "5"])
        .output()
        .unwrap();
    assert!(!o.status.success(), "a plaintext client read through the TLS front");
}
