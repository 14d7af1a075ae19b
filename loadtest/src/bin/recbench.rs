//! `idgraph-recbench`: the profile record codec alone (`make
//! bench-records`). Runs the first `--events` events of a file through the
//! identity core in memory (one partition, no store), takes every profile
//! record the run leaves, checks that the hand-written codec
//! (`decode_profile`, `encode_profile_append`) gives the bytes and values
//! serde gives, then times both codecs over all records, alternating, for
//! `--rounds` rounds. Prints one JSON line: nanoseconds per record, best
//! and median, for each codec and direction.

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

    // The same bytes and values both ways, on every record.
    let mut serde_bytes = Vec::new();
    let mut hand_bytes = Vec::new();
    let mut ends = Vec::with_capacity(records.len());
    for rec in &records {
        encode_append(rec, &mut serde_bytes);
        encode_profile_append(rec, &mut hand_bytes);
        ends.push(serde_bytes.len());
    }
    anyhow::ensure!(serde_bytes == hand_bytes, "the hand-written encoding differs from serde's");
    let slices: Vec<&[u8]> =
        std::iter::once(0).chain(ends.iter().copied()).zip(ends.iter().copied()).map(|(s, e)| &serde_bytes[s..e]).collect();
    for (rec, b) in records.iter().zip(&slices) {
        anyhow::ensure!(decode_profile(b).ok().as_ref() == Some(rec), "the hand-written decoder read a record differently");
        anyhow::ensure!(decode::<ProfileRecord>(b).ok().as_ref() == Some(rec), "serde read a record differently");
    }

    let n = records.len() as f64;
    let per_record = |t: Instant| t.elapsed().as_secs_f64() * 1e9 / n;
    let (mut dec_serde, mut dec_hand, mut enc_serde, mut enc_hand) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut buf = Vec::with_capacity(serde_bytes.len());
    for _ in 0..a.rounds {
        let t = Instant::now();
        for b in &slices {
            std::hint::black_box(decode::<ProfileRecord>(b).ok());
        }
        dec_serde.push(per_record(t));
        let t = Instant::now();
        for b in &slices {
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
        serde_json::json!({"records": records.len(), "bytes_per_record": (serde_bytes.len() as f64 / n * 10.0).round() / 10.0, "rounds": a.rounds,
            "decode_serde_ns": summary(dec_serde), "decode_hand_ns": summary(dec_hand),
            "encode_serde_ns": summary(enc_serde), "encode_hand_ns": summary(enc_hand)})
    );
    Ok(())
}
