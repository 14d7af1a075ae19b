//! `idgraph run` against a broker it reaches only through TLS
//! (`[kafka.client]` properties): the profiles equal replay's, and a
//! client without TLS gets nothing through. Avro outputs with a schema
//! registry over HTTPS with basic auth.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use idgraph_e2e::kafka::{engine_config, free_port, tool, Engine, Tansu, TlsFront};
use idgraph_e2e::registry::Registry;
use idgraph_e2e::{assert_no_rule_fired, assert_same_shape, generate, idgraph_env, replay_and_profiles, stderr};
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
    // `--values` prints the profiles alone, as the scorer reads them.
    let mut values = broker.consume_with("idgraph.profiles", true, &["--values"]);
    let mut wrapped = got.clone();
    let by_id = |p: &serde_json::Value| p["profile_id"].as_str().unwrap().to_string();
    values.sort_by_key(by_id);
    wrapped.sort_by_key(by_id);
    assert_eq!(values, wrapped);
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

/// Avro outputs with a registry over HTTPS that wants basic auth, as a
/// managed registry does: the credentials ride in the URL, the engine
/// trusts the registry's CA through `SSL_CERT_FILE`; wrong credentials
/// stop start-up with an error that names the registry without them, and
/// so does a Kafka certificate that the configured CA did not sign.
#[test]
fn avro_outputs_register_with_an_https_registry_that_wants_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let n = 500;
    let events = dir.path().join("events.ndjson");
    generate(&events, GenConfig { persons: 100, events: n, seed: 6, segment: true, kiosks: 0, family_rate: 0.0, ..Default::default() });
    let broker = Tansu::start_tls(dir.path());
    broker.create_topic("touchpoints", 4);
    broker.produce("touchpoints", &events, 0);
    let registry = Registry::start_with_auth(Some("svc:p@ss"));
    let plain: u16 = registry.url.rsplit(':').next().unwrap().parse().unwrap();
    let front = TlsFront::start(dir.path(), "registry", free_port(), plain);
    let ca = front.ca.to_str().unwrap().to_string();

    // Kafka's certificate checked against the wrong CA: start-up stops at
    // once with librdkafka's reason (it used to time out after a minute
    // saying only that the brokers did not answer).
    let wrong_ca = format!("[kafka.client]\n\"security.protocol\" = \"ssl\"\n\"ssl.ca.location\" = \"{ca}\"\n");
    let cfg = engine_config(dir.path(), "ca", &broker.brokers(), &dir.path().join("ca-state"), &wrong_ca);
    let t = std::time::Instant::now();
    let o = idgraph_env(&["run", "--config", cfg.to_str().unwrap()], &[]);
    let err = stderr(&o);
    assert!(!o.status.success() && t.elapsed() < Duration::from_secs(20), "{:?}: {err}", t.elapsed());
    assert!(err.contains("cannot be reached") && err.contains("SSL handshake failed") && err.contains("kafka.client"), "{err}");

    // A wrong password: refused, and the error keeps the secret out.
    let outputs = |creds: &str| format!("[outputs]\nformat = \"avro\"\nschema-registry = \"https://{creds}@127.0.0.1:{}\"\n", front.port);
    let extra = format!("{}{}", broker.client_section(), outputs("svc:wr0ng"));
    let cfg = engine_config(dir.path(), "bad", &broker.brokers(), &dir.path().join("bad-state"), &extra);
    let o = idgraph_env(&["run", "--config", cfg.to_str().unwrap()], &[("SSL_CERT_FILE", &ca)]);
    let err = stderr(&o);
    assert!(!o.status.success(), "started with wrong registry credentials");
    assert!(err.contains(&format!("https://***@127.0.0.1:{}", front.port)) && err.contains("HTTP 401"), "{err}");
    assert!(!err.contains("wr0ng"), "the password is printed: {err}");

    // The right one (percent-encoded `@`).
    let extra = format!("{}{}", broker.client_section(), outputs("svc:p%40ss"));
    let cfg = engine_config(dir.path(), "e", &broker.brokers(), &dir.path().join("state"), &extra);
    let engine = Engine::start_env(&cfg, &dir.path().join("engine.log"), &[("SSL_CERT_FILE", &ca)]);
    engine.wait_quiescent(n, Duration::from_secs(120));
    assert!(engine.stop(), "engine did not exit cleanly on SIGTERM");
    let subjects: Vec<String> = registry.registered().into_iter().map(|(s, _, _)| s).collect();
    for topic in ["idgraph.profiles", "idgraph.lifecycle", "idgraph.consent", "idgraph.rejects"] {
        assert!(subjects.contains(&format!("{topic}-value")), "{topic} not registered: {subjects:?}");
    }
    let profiles = broker.consume_with("idgraph.profiles", true, &["--hex"]);
    assert!(profiles.len() > 20, "{} profiles", profiles.len());
    for p in &profiles {
        let v = p["value"].as_str().unwrap();
        assert!(v.starts_with("00000000"), "Confluent wire format with a registry ID: {v}");
    }
}
