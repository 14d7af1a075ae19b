//! Crashes between state write and progress commit, and kill -9 at random
//! points: the final state and every output stream equal an uncrashed run.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use idgraph_e2e::{bin, generate, idgraph_env, profiles};
use idgraph_loadtest::gen::GenConfig;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const BATCH: (&str, &str) = ("IDGRAPH__REPLAY__BATCH_SIZE", "300");

fn data(dir: &Path) -> std::path::PathBuf {
    let f = dir.join("events.ndjson");
    generate(&f, GenConfig { persons: 2_000, events: 12_000, seed: 7, segment: true, ..Default::default() });
    f
}

fn replay_args<'a>(state: &'a str, out: &'a str, input: &'a str) -> Vec<&'a str> {
    vec!["replay", "--format", "segment", "--report", "0", "--state", state, "--out", out, input]
}

/// Profiles and all output files of a finished state.
fn result(state: &Path, out: &Path) -> (Vec<serde_json::Value>, Vec<String>) {
    let files = ["profiles", "lifecycle", "consent", "rejects"]
        .iter()
        .map(|s| std::fs::read_to_string(out.join(format!("{s}.ndjson"))).unwrap())
        .collect();
    (profiles(state), files)
}

#[test]
fn injected_crashes_at_every_commit_point_leave_the_uncrashed_result() {
    let dir = tempfile::tempdir().unwrap();
    let input = data(dir.path());
    let input = input.to_str().unwrap();
    let (s0, o0) = (dir.path().join("s0"), dir.path().join("o0"));
    let o = idgraph_env(&replay_args(s0.to_str().unwrap(), o0.to_str().unwrap(), input), &[BATCH]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let expected = result(&s0, &o0);
    assert!(expected.0.len() > 100);

    for (i, point) in ["replay.before-outputs", "replay.before-commit", "replay.after-commit"].iter().enumerate() {
        for nth in [1u32, 7, 23] {
            let s = dir.path().join(format!("s-{i}-{nth}"));
            let out = dir.path().join(format!("o-{i}-{nth}"));
            let args = replay_args(s.to_str().unwrap(), out.to_str().unwrap(), input);
            let fault = format!("{point}:{nth}");
            let crashed = idgraph_env(&args, &[BATCH, ("IDGRAPH_FAULT", &fault)]);
            assert!(!crashed.status.success(), "{fault} did not crash");
            let resumed = idgraph_env(&args, &[BATCH]);
            assert!(resumed.status.success(), "{fault}: {}", String::from_utf8_lossy(&resumed.stderr));
            assert_eq!(result(&s, &out), expected, "state or outputs differ after a crash at {fault}");
        }
    }
}

#[test]
fn kill_dash_nine_at_random_points_loses_nothing_and_applies_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let input = data(dir.path());
    let (s0, o0) = (dir.path().join("s0"), dir.path().join("o0"));
    let o = idgraph_env(&replay_args(s0.to_str().unwrap(), o0.to_str().unwrap(), input.to_str().unwrap()), &[BATCH]);
    assert!(o.status.success());
    let expected = result(&s0, &o0);

    let (s, out) = (dir.path().join("s"), dir.path().join("o"));
    let args = replay_args(s.to_str().unwrap(), out.to_str().unwrap(), input.to_str().unwrap());
    let mut kills = 0;
    // Deterministic "random" delays: a small LCG, so failures reproduce.
    let mut x: u64 = 12345;
    for _ in 0..200 {
        let mut child = Command::new(bin()).args(&args).env(BATCH.0, BATCH.1).stderr(std::process::Stdio::null()).spawn().unwrap();
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis(10 + (x >> 33) % 60));
        if child.try_wait().unwrap().is_some() {
            break;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
    }
    let o = idgraph_env(&args, &[BATCH]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(kills >= 3, "the run finished too fast to be killed ({kills} kills)");
    assert_eq!(result(&s, &out), expected, "after {kills} kills");
}
