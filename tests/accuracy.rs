//! Accuracy on the generator's data (shared kiosks and family tablets, family
//! emails, junk values, formatting variants, late events): pairwise
//! precision >= 0.999 and recall >= 0.99.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use idgraph_e2e::{generate, idgraph, ok};
use idgraph_loadtest::gen::GenConfig;
use idgraph_loadtest::score::{score, Truth};

/// `batch`: lines per committed batch; small batches make events arrive one
/// after the other, large ones let many race within a batch.
fn run(segment: bool, seed: u64, batch: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (ev, truth) = (dir.path().join("events.ndjson"), dir.path().join("truth.ndjson"));
    let t =
        generate(&ev, GenConfig { persons: 20_000, events: 150_000, seed, segment, kiosks: 8, family_rate: 0.15, ..Default::default() });
    std::fs::write(&truth, &t).unwrap();
    let state = dir.path().join("s");
    let fmt = if segment { "segment" } else { "canonical" };
    let out = dir.path().join("o");
    let args = [
        "replay",
        "--format",
        fmt,
        "--report",
        "0",
        "--state",
        state.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        ev.to_str().unwrap(),
    ];
    ok(&idgraph_e2e::idgraph_env(&args, &[("IDGRAPH__REPLAY__BATCH_SIZE", batch)]));
    let profiles = ok(&idgraph(&["profiles", "--state", state.to_str().unwrap()]));
    let s = score(&Truth::parse(&t).unwrap(), &profiles).unwrap();
    eprintln!("{fmt} seed {seed}: {s:?}");
    assert!(s.truth_pairs > 10_000, "the data must link plenty: {s:?}");
    assert!(s.precision >= 0.999, "precision {} (over-merges {:?})", s.precision, s.over_merges);
    assert!(s.recall >= 0.99, "recall {} (under-merges {:?})", s.recall, s.under_merges);
}

#[test]
fn segment_data_meets_precision_and_recall() {
    run(true, 11, "256");
}

#[test]
fn canonical_data_meets_precision_and_recall() {
    run(false, 12, "16384");
}
