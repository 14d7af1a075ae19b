//! `idgraph-recbench`: the profile record codec alone (`make
//! bench-records`). Runs the first `--events` events of a file through the
//! identity core in memory (one partition, no store), takes every profile
//! record the run leaves, checks that both codecs read back what they
//! wrote (serde: record format 4; by hand, `encode_profile_append` and
//! `decode_profile`: format 5, times since `created`, shared edge
//! evidence once) and that the hand
//! decoder reads format 4 as serde does, then times both codecs over all
//! records, alternating, for `--rounds` rounds. Prints one JSON line: bytes
//! per record in each format, and nanoseconds per record, best and median,
//! for each codec and direction.

use clap::Parser as _;
use idgraph_core::cluster::Cluster;
use idgraph_core::config::CoreConfig;
use idgraph_core::invariants::Snapshot;
use idgraph_core::partition::{Effects, EmptyLoader};
use idgraph_core::record::{decode, decode_profile, encode_append, encode_profile_append, ProfileRecord};
use std::io::BufRead;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(clap::Parser, Debug)]
struct Args {
    #[arg(long, default_value = "segment")]
    format: String,
    #[arg(long, default_value_t = 7)]
    rounds: usize,
    /// Events read from the file (the first ones).
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    file: PathBuf,
}

/// Consecutive records of `bytes` ending at `ends`.
fn split<'a>(bytes: &'a [u8], ends: &[usize]) -> Vec<&'a [u8]> {
    std::iter::once(0).chain(ends.iter().copied()).zip(ends.iter().copied()).map(|(s, e)| &bytes[s..e]).collect()
}

/// Best and median of a round's nanoseconds per record.
fn summary(mut ns: Vec<f64>) -> serde_json::Value {
    ns.sort_by(f64::total_cmp);
    serde_json::json!({"best": (ns[0] * 10.0).round() / 10.0, "median": (ns[ns.len() / 2] * 10.0).round() / 10.0})
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    anyhow::ensure!(a.rounds > 0, "--rounds: at least one");
    let mut parser = idgraph_loadtest::default_parser(&a.format)?;
    let mut cluster = Cluster::new(1, Arc::new(CoreConfig::default()));
    let r = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&a.file)?);
    let mut fx = Effects::default();
    for (i, line) in r.split(b'\n').take(a.events).enumerate() {
        if let Ok(ev) = parser.parse(&line?) {
            cluster.submit(ev);
        }
        if i % 16_384 == 16_383 {
            cluster.run(&mut EmptyLoader, &mut fx);
            fx = Effects::default();
        }
    }
    cluster.run(&mut EmptyLoader, &mut fx);
    let mut snap = Snapshot::default();
    for p in &cluster.parts {
        p.snapshot_into(&mut snap);
    }
    drop(cluster);
    let records: Vec<ProfileRecord> = snap.profiles.into_values().collect();
    anyhow::ensure!(!records.is_empty(), "no profiles: is the input empty?");

    // Each codec reads back what it wrote, on every record.
    let (mut serde_bytes, mut serde_ends) = (Vec::new(), Vec::with_capacity(records.len()));
    let (mut hand_bytes, mut hand_ends) = (Vec::new(), Vec::with_capacity(records.len()));
    for rec in &records {
        encode_append(rec, &mut serde_bytes);
        serde_ends.push(serde_bytes.len());
        encode_profile_append(rec, &mut hand_bytes);
        hand_ends.push(hand_bytes.len());
    }
    let serde_slices = split(&serde_bytes, &serde_ends);
    let hand_slices = split(&hand_bytes, &hand_ends);
    for ((rec, s), h) in records.iter().zip(&serde_slices).zip(&hand_slices) {
        anyhow::ensure!(decode::<ProfileRecord>(s).ok().as_ref() == Some(rec), "serde read a record differently");
        anyhow::ensure!(decode_profile(s).ok().as_ref() == Some(rec), "the hand-written decoder read a format 4 record differently");
        anyhow::ensure!(decode_profile(h).ok().as_ref() == Some(rec), "the hand-written decoder read a format 5 record differently");
    }

    let n = records.len() as f64;
    let per_record = |t: Instant| t.elapsed().as_secs_f64() * 1e9 / n;
    let (mut dec_serde, mut dec_hand, mut enc_serde, mut enc_hand) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut buf = Vec::with_capacity(serde_bytes.len());
    for _ in 0..a.rounds {
        let t = Instant::now();
        for b in &serde_slices {
            std::hint::black_box(decode::<ProfileRecord>(b).ok());
        }
        dec_serde.push(per_record(t));
        let t = Instant::now();
        for b in &hand_slices {
            std::hint::black_box(decode_profile(b).ok());
        }
        dec_hand.push(per_record(t));
        buf.clear();
        let t = Instant::now();
        for rec in &records {
            encode_append(rec, &mut buf);
        }
        enc_serde.push(per_record(t));
        buf.clear();
        let t = Instant::now();
        for rec in &records {
            encode_profile_append(rec, &mut buf);
        }
        enc_hand.push(per_record(t));
    }
    println!(
        "{}",
        serde_json::json!({"records": records.len(), "rounds": a.rounds,
            "bytes_per_record_serde": (serde_bytes.len() as f64 / n * 10.0).round() / 10.0,
            "bytes_per_record_hand": (hand_bytes.len() as f64 / n * 10.0).round() / 10.0,
            "decode_serde_ns": summary(dec_serde), "decode_hand_ns": summary(dec_hand),
            "encode_serde_ns": summary(enc_serde), "encode_hand_ns": summary(enc_hand)})
    );
    Ok(())
}
