//! `idgraph-parsebench`: the input parser alone (`make bench-parse`). Reads
//! the events into memory first, then parses and normalises all of them
//! `--rounds` times with the parser `replay` and `run` use, and prints one
//! JSON line: the best and median microseconds per event over the rounds.

use clap::Parser as _;
use std::io::BufRead;
use std::path::PathBuf;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(clap::Parser, Debug)]
struct Args {
    #[arg(long, default_value = "segment")]
    format: String,
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Events read from the file (the first ones).
    #[arg(long, default_value_t = 2_000_000)]
    events: usize,
    file: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let mut parser = idgraph_loadtest::default_parser(&a.format)?;
    let r = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&a.file)?);
    let lines: Vec<Vec<u8>> = r.split(b'\n').take(a.events).collect::<Result<_, _>>()?;
    anyhow::ensure!(!lines.is_empty() && a.rounds > 0, "no events to parse");
    let (mut rejects, mut idents) = (0u64, 0u64);
    let mut us: Vec<f64> = Vec::with_capacity(a.rounds);
    for _ in 0..a.rounds {
        let t0 = Instant::now();
        for l in &lines {
            match parser.parse(l) {
                Ok(ev) => idents += ev.idents.len() as u64,
                Err(_) => rejects += 1,
            }
        }
        us.push(t0.elapsed().as_secs_f64() * 1e6 / lines.len() as f64);
    }
    us.sort_by(f64::total_cmp);
    let rounds = a.rounds as u64;
    println!(
        "{}",
        serde_json::json!({"events": lines.len(), "rounds": a.rounds, "rejects": rejects / rounds, "identifiers": idents / rounds,
            "us_per_event_best": (us[0] * 1000.0).round() / 1000.0, "us_per_event_median": (us[us.len() / 2] * 1000.0).round() / 1000.0,
            "events_per_second_best": (1e6 / us[0]).round()})
    );
    Ok(())
}
