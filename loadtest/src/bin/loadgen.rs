//! `idgraph-loadgen`: synthetic touchpoints with ground truth.

use clap::Parser;
use idgraph_loadtest::gen::{GenConfig, Generator};
use std::io::BufWriter;
use std::path::PathBuf;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(about = "Generate synthetic touchpoints (canonical or Segment-spec NDJSON) and a truth file")]
struct Args {
    #[arg(long, default_value_t = 1000)]
    persons: u64,
    #[arg(long, default_value_t = 10_000)]
    events: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// canonical or segment
    #[arg(long, default_value = "canonical")]
    format: String,
    #[arg(long, default_value_t = 0.02)]
    junk_rate: f64,
    #[arg(long, default_value_t = 0.05)]
    late_rate: f64,
    #[arg(long, default_value_t = 5)]
    kiosks: u64,
    #[arg(long, default_value_t = 0.1)]
    family_rate: f64,
    /// Events file to write.
    #[arg(long)]
    out: PathBuf,
    /// Truth file to write.
    #[arg(long)]
    truth: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let segment = match a.format.as_str() {
        "segment" => true,
        "canonical" => false,
        other => anyhow::bail!("--format must be canonical or segment, not `{other}`"),
    };
    let mut g = Generator::new(GenConfig {
        persons: a.persons.max(1),
        events: a.events,
        seed: a.seed,
        segment,
        junk_rate: a.junk_rate,
        late_rate: a.late_rate,
        kiosks: a.kiosks,
        family_rate: a.family_rate,
    });
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(&a.out)?);
    g.write_events(&mut w)?;
    std::io::Write::flush(&mut w)?;
    if let Some(t) = &a.truth {
        let mut w = BufWriter::new(std::fs::File::create(t)?);
        g.write_truth(&mut w)?;
        std::io::Write::flush(&mut w)?;
    }
    eprintln!("wrote {} events for {} persons to {}", a.events, a.persons, a.out.display());
    Ok(())
}
