//! kill -9 of `idgraph run` at random points while it consumes (and
//! injected crashes between the state commit and the outbox drain, and
//! between a batch's records and its changelog markers): no event lost,
//! none applied twice, no `(profile_id, version)` published with two
//! different contents.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use idgraph_e2e::kafka::{assert_versions_consistent, engine_config, log_tail, wait_for_event_total, Engine, Tansu};
use idgraph_e2e::{assert_no_rule_fired, assert_same_shape, generate, idgraph, ok, replay_and_profiles};
use idgraph_loadtest::gen::GenConfig;
use std::time::{Duration, Instant};

#[test]
fn kill_minus_nine_loses_nothing_and_applies_nothing_twice() {
    let kills: u32 = std::env::var("KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let tmp = tempfile::tempdir().unwrap();
    let root = idgraph_e2e::work_dir(&tmp);
    let dir = root.as_path();
    let n = 30_000u64;
    // No kiosks or family tablets: no rule fires, so the result is the
    // same whatever the arrival order, and must equal replay exactly.
    let events = dir.join("events.ndjson");
    generate(&events, GenConfig { persons: 4_000, events: n, seed: 21, segment: true, kiosks: 0, family_rate: 0.0, ..Default::default() });

    let broker = std::sync::Arc::new(Tansu::start());
    broker.create_topic("touchpoints", 4);
    let state = dir.join("state");
    let cfg = engine_config(dir, "e", &broker.brokers(), &state, "[run]\nbatch-records = 200\n");
    let log = dir.join("engine.log");

    let feeder = {
        let (b, f) = (broker.clone(), events.clone());
        std::thread::spawn(move || b.produce("touchpoints", &f, 1_500))
    };
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut rnd = move |lo: u64, hi: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        lo + seed % (hi - lo)
    };
    let (mut fault_crashes, mut marker_crashes, mut clpos_crashes) = (0u32, 0u32, 0u32);
    // Where the log stood at the first crash before the changelog
    // positions were stored: the restores after it must continue.
    let mut first_clpos_crash: Option<usize> = None;
    for i in 0..kills {
        // Each run joins a consumer group of its own, so it re-reads the
        // input from the start and the partitions must drop every event
        // they already applied. (It also keeps clear of a tansu defect:
        // after members of a group are killed its coordinator can stop
        // assigning that group's partitions.)
        let group = format!("crash-{i}");
        let env_group = [("IDGRAPH__KAFKA__GROUP_ID", group.as_str())];
        // Every fourth run crashes itself, in turn: right after a commit,
        // before the batch's records are produced; once a batch's records
        // are acknowledged, before its changelog markers; once its markers
        // are acknowledged, before their positions are stored. The others
        // are killed at a random time once they are consuming.
        if i % 4 == 3 {
            let point = ["run.after-commit", "run.before-markers", "run.before-clpos"][(i / 4) as usize % 3];
            let fault = format!("{point}:{}", rnd(2, 40));
            let mut e = Engine::start_env(&cfg, &log, &[env_group[0], ("IDGRAPH_FAULT", &fault)]);
            let t = Instant::now();
            while e.child.try_wait().unwrap().is_none() && t.elapsed() < Duration::from_secs(20) {
                std::thread::sleep(Duration::from_millis(20));
            }
            // Aborted by the fault point (SIGABRT), not exited otherwise.
            if e.child.try_wait().unwrap().and_then(|st| std::os::unix::process::ExitStatusExt::signal(&st)) == Some(6) {
                *[&mut fault_crashes, &mut marker_crashes, &mut clpos_crashes][(i / 4) as usize % 3] += 1;
                if point == "run.before-clpos" && first_clpos_crash.is_none() {
                    first_clpos_crash = Some(std::fs::metadata(&log).unwrap().len() as usize);
                }
            }
            e.child.kill().ok();
        } else {
            let e = Engine::start_env(&cfg, &log, &env_group);
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(20) {
                let m = e.metrics();
                if m.iter().any(|(k, v)| k.starts_with("idgraph_ingest_events_total") && *v > 0.0) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            std::thread::sleep(Duration::from_millis(rnd(20, 900)));
            e.kill9();
        }
    }
    feeder.join().unwrap();

    let mut engine = Engine::start_env(&cfg, &log, &[("IDGRAPH__KAFKA__GROUP_ID", "crash-final")]);
    wait_for_event_total(&broker, n, Duration::from_secs(240), || match engine.child.try_wait().unwrap() {
        Some(st) => Err(format!("the engine exited ({st}); log tail:\n{}", log_tail(&log, 15))),
        None => Ok(()),
    });
    engine.wait_quiescent(0, Duration::from_secs(60));
    assert!(engine.stop());

    let expected = replay_and_profiles("segment", &dir.join("rs"), &dir.join("ro"), &[&events]);
    assert_no_rule_fired(&dir.join("ro"));
    let check = ok(&idgraph(&["check", "--state", state.to_str().unwrap()]));
    assert!(check.contains("all invariants hold"), "{check}");
    assert_same_shape(&idgraph_e2e::profiles(&state), &expected, "state against an uncrashed replay");
    assert_same_shape(&broker.profiles(), &expected, "profiles topic against an uncrashed replay");

    // Re-published records repeat, never change: one content per (id, version).
    let (versions, repeats) = assert_versions_consistent(&broker);
    eprintln!(
        "{kills} crashes ({fault_crashes} after a commit, {marker_crashes} before the markers, {clpos_crashes} before the positions); {versions} profile versions, {repeats} re-published"
    );
    // The crash between a state write and its outputs did happen.
    assert!(kills < 4 || fault_crashes > 0, "no run reached the fault point after a commit");
    // A batch cut short before its markers left records that did not
    // apply; the next owner wrote their restored values with its claim.
    if marker_crashes > 0 {
        let text = std::fs::read_to_string(&log).unwrap();
        let rewrote = text
            .lines()
            .any(|l| l.contains("partition restored") && l.split("\"unapplied_keys\":").nth(1).is_some_and(|r| !r.starts_with('0')));
        assert!(rewrote, "no restore after a crash before the markers found an unapplied key");
    }
    // A state one batch past its stored changelog position continued from
    // there (that batch's marker chained) instead of being rebuilt: a
    // restore after the crash did (a random kill can leave the same state,
    // so the first restore to complete may be a later run's).
    if let Some(at) = first_clpos_crash {
        let text = std::fs::read_to_string(&log).unwrap();
        let continued =
            text.get(at..).unwrap_or(&text).lines().any(|l| l.contains("partition restored") && l.contains("\"local_ahead\":true"));
        assert!(continued, "no restore after a crash before the changelog positions continued from the local state");
    }
}
