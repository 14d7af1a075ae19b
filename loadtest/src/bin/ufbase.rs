//! `idgraph-ufbase`: the in-memory baseline of `make bench-core`. Parses and
//! normalises the same events with the same parser as idgraph, then joins
//! every event's identifiers with a plain union-find (no rules, no profiles,
//! no storage). Prints one JSON line of figures.

use clap::Parser as _;
use idgraph_core::ident::IdentKey;
use rustc_hash::FxHashMap;
use std::io::BufRead;
use std::path::PathBuf;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(clap::Parser, Debug)]
struct Args {
    #[arg(long, default_value = "segment")]
    format: String,
    file: PathBuf,
}

fn find(p: &mut [u32], mut i: u32) -> u32 {
    while p[i as usize] != i {
        let up = p[p[i as usize] as usize];
        p[i as usize] = up;
        i = up;
    }
    i
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let mut parser = idgraph_loadtest::default_parser(&a.format)?;
    let t0 = Instant::now();
    let mut ids: FxHashMap<IdentKey, u32> = FxHashMap::default();
    let mut parent: Vec<u32> = Vec::new();
    let (mut events, mut rejects) = (0u64, 0u64);
    let r = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&a.file)?);
    for line in r.split(b'\n') {
        let line = line?;
        match parser.parse(&line) {
            Ok(ev) => {
                events += 1;
                let mut first = None;
                for k in ev.idents {
                    let n = ids.len() as u32;
                    let i = *ids.entry(k).or_insert_with(|| {
                        parent.push(n);
                        n
                    });
                    match first {
                        None => first = Some(i),
                        Some(f) => {
                            let (x, y) = (find(&mut parent, f), find(&mut parent, i));
                            if x != y {
                                parent[x.max(y) as usize] = x.min(y);
                            }
                        }
                    }
                }
            }
            Err(_) => rejects += 1,
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let mut roots = 0u64;
    for i in 0..parent.len() as u32 {
        if find(&mut parent, i) == i {
            roots += 1;
        }
    }
    println!(
        "{}",
        serde_json::json!({"events": events, "rejects": rejects, "identifiers": ids.len(), "components": roots,
            "seconds": secs, "events_per_second": events as f64 / secs})
    );
    Ok(())
}
