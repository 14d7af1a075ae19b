//! Scaling by consumer group: 1, then 3, then 2 instances of `idgraph run`
//! in one group against tansu (the third stopped by SIGKILL while it
//! works), each with its own state directory. Core partitions move with
//! their state (restored from the changelog); the end result equals a
//! single uncrashed run, and a new instance rebuilt from the changelog
//! alone holds the same state with every invariant.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use idgraph_e2e::kafka::{assert_versions_consistent, engine_config, log_tail, wait_for_event_total, Engine, Tansu};
use idgraph_e2e::{assert_no_rule_fired, assert_same_shape, generate, idgraph, ok, replay_and_profiles};
use idgraph_loadtest::gen::GenConfig;
use std::path::Path;
use std::time::{Duration, Instant};

fn metric(e: &Engine, name: &str) -> f64 {
    e.metrics().get(name).copied().unwrap_or(0.0)
}

/// Waits until `cond` holds for the engines' metrics.
fn wait_until(what: &str, timeout: Duration, logs: &[&Path], mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if Instant::now() >= deadline {
            let tails: Vec<String> = logs.iter().map(|l| format!("{}:\n{}", l.display(), log_tail(l, 12))).collect();
            panic!("{what}: not reached within {timeout:?}\n{}", tails.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn one_then_three_then_two_instances_end_with_the_single_instance_profiles() {
    let tmp = tempfile::tempdir().unwrap();
    let root = idgraph_e2e::work_dir(&tmp);
    let dir = root.as_path();
    let n = 24_000u64;
    // No rule fires on this data: the result is independent of the order
    // in which partitions see their commands, so it must equal replay.
    let events = dir.join("events.ndjson");
    generate(&events, GenConfig { persons: 3_000, events: n, seed: 33, segment: true, kiosks: 0, family_rate: 0.0, ..Default::default() });

    let broker = std::sync::Arc::new(Tansu::start());
    broker.create_topic("touchpoints", 4);
    let extra = "[run]\nbatch-records = 500\n";
    let cfg = |name: &str| engine_config(dir, name, &broker.brokers(), &dir.join(format!("state-{name}")), extra);
    let logs: Vec<_> = ["a", "b", "c", "d"].iter().map(|n| dir.join(format!("{n}.log"))).collect();
    let group = [("IDGRAPH__KAFKA__GROUP_ID", "scale")];

    let feeder = {
        let (b, f) = (broker.clone(), events.clone());
        std::thread::spawn(move || b.produce("touchpoints", &f, 2_000))
    };
    // One instance owns every partition.
    let a = Engine::start_env(&cfg("a"), &logs[0], &group);
    wait_until("instance a owns the 4 core partitions and reads", Duration::from_secs(60), &[&logs[0]], || {
        metric(&a, "idgraph_core_partitions_owned") == 4.0 && metric(&a, "idgraph_core_commands_total") > 0.0
    });
    // Three instances: the partitions spread, the moved ones restored.
    let b = Engine::start_env(&cfg("b"), &logs[1], &group);
    let c = Engine::start_env(&cfg("c"), &logs[2], &group);
    wait_until(
        "3 instances share the 4 partitions, each ready",
        Duration::from_secs(60),
        &logs[..3].iter().map(|l| l.as_path()).collect::<Vec<_>>(),
        || {
            let owned: Vec<f64> = [&a, &b, &c].iter().map(|e| metric(e, "idgraph_core_partitions_owned")).collect();
            owned.iter().sum::<f64>() == 4.0 && owned.iter().all(|o| *o >= 1.0) && [&b, &c].iter().all(|e| e.get("/readyz").0 == 200)
        },
    );
    let restored: f64 = [&b, &c].iter().map(|e| metric(e, "idgraph_core_restores_total{mode=\"rebuild\"}")).sum();
    assert!(restored >= 2.0, "the new instances rebuilt their partitions from the changelog ({restored} restores)");
    wait_until("instance c works", Duration::from_secs(30), &[&logs[2]], || metric(&c, "idgraph_core_commands_total") > 0.0);
    // Two instances: c dies; its partitions go to a and b.
    c.kill9();
    wait_until("a and b own the 4 partitions again", Duration::from_secs(60), &[&logs[0], &logs[1]], || {
        metric(&a, "idgraph_core_partitions_owned") + metric(&b, "idgraph_core_partitions_owned") == 4.0
    });
    feeder.join().unwrap();
    wait_for_event_total(&broker, n, Duration::from_secs(180), || {
        let dead: Vec<_> = [(&a, &logs[0]), (&b, &logs[1])].into_iter().filter(|(e, _)| e.get("/healthz").0 != 200).collect();
        match dead.first() {
            Some((_, l)) => Err(format!("an engine stopped answering; log tail:\n{}", log_tail(l, 15))),
            None => Ok(()),
        }
    });
    a.wait_quiescent(0, Duration::from_secs(60));
    b.wait_quiescent(0, Duration::from_secs(60));
    assert!(a.stop(), "instance a stops cleanly");
    assert!(b.stop(), "instance b stops cleanly");

    let expected = replay_and_profiles("segment", &dir.join("rs"), &dir.join("ro"), &[&events]);
    assert_no_rule_fired(&dir.join("ro"));
    assert_same_shape(&broker.profiles(), &expected, "profiles topic against a single uncrashed run");
    let (versions, repeats) = assert_versions_consistent(&broker);

    // A new instance with an empty state dir rebuilds every partition from
    // the changelog alone: same state, every invariant holding. It joins a
    // group of its own (tansu's coordinator can stop assigning a group's
    // partitions to new members after one was killed), so its ingest also
    // re-reads every input record, which the restored partitions must drop.
    let d = Engine::start_env(&cfg("d"), &logs[3], &[("IDGRAPH__KAFKA__GROUP_ID", "scale-d")]);
    wait_until("instance d restored all 4 partitions", Duration::from_secs(60), &[&logs[3]], || {
        metric(&d, "idgraph_core_partitions_owned") == 4.0 && d.get("/readyz").0 == 200
    });
    d.wait_quiescent(n, Duration::from_secs(60));
    let dropped = metric(&d, "idgraph_core_duplicates_dropped_total");
    assert!(dropped >= n as f64, "the re-read input was dropped as already applied ({dropped} of {n})");
    assert!(d.stop(), "instance d stops cleanly");
    let state_d = dir.join("state-d");
    let check = ok(&idgraph(&["check", "--state", state_d.to_str().unwrap()]));
    assert!(check.contains("all invariants hold"), "{check}");
    assert_same_shape(&idgraph_e2e::profiles(&state_d), &expected, "state rebuilt from the changelog");
    eprintln!("{} profiles; {versions} profile versions, {repeats} re-published", expected.len());
}

/// Another writer on a partition's changelog (here: stray records produced
/// into `idgraph.changelog` while the engine runs) makes the owner stand by,
/// rebuild and claim the partition again; nothing is lost or applied twice.
#[test]
fn a_second_writer_on_the_changelog_makes_the_owner_stand_by_and_come_back() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let n = 8_000u64;
    let events = dir.join("events.ndjson");
    generate(&events, GenConfig { persons: 1_500, events: n, seed: 41, segment: true, kiosks: 0, family_rate: 0.0, ..Default::default() });
    let broker = std::sync::Arc::new(Tansu::start());
    broker.create_topic("touchpoints", 4);
    let log = dir.join("e.log");
    let cfg = engine_config(dir, "e", &broker.brokers(), &dir.join("state"), "[run]\nbatch-records = 300\n");
    let feeder = {
        let (b, f) = (broker.clone(), events.clone());
        std::thread::spawn(move || b.produce("touchpoints", &f, 2_000))
    };
    let e = Engine::start(&cfg, &log);
    wait_until("the engine works", Duration::from_secs(60), &[&log], || metric(&e, "idgraph_core_commands_total") > 0.0);
    let stray = dir.join("stray.ndjson");
    std::fs::write(&stray, "not a changelog record\n").unwrap();
    for p in 0..4 {
        broker.produce_with("idgraph.changelog", &stray, 0, &["--partition", &p.to_string()]);
    }
    wait_until("a partition stood by", Duration::from_secs(60), &[&log], || metric(&e, "idgraph_core_fenced_total") >= 1.0);
    feeder.join().unwrap();
    wait_for_event_total(&broker, n, Duration::from_secs(120), || Ok(()));
    e.wait_quiescent(n, Duration::from_secs(60));
    assert_eq!(metric(&e, "idgraph_core_partitions_owned"), 4.0, "every partition came back");
    assert!(e.stop());
    let expected = replay_and_profiles("segment", &dir.join("rs"), &dir.join("ro"), &[&events]);
    assert_no_rule_fired(&dir.join("ro"));
    assert_same_shape(&broker.profiles(), &expected, "profiles after standing by");
    assert_versions_consistent(&broker);
}
