//! `idgraph-produce`: NDJSON lines to a Kafka topic, one record per line,
//! at a bounded rate (or as fast as the broker takes them), lz4-compressed
//! like production producers. Prints the count and the rate.

use anyhow::{Context, Result};
use clap::Parser;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use std::io::BufRead;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(about = "Produce NDJSON lines to a Kafka topic")]
struct Args {
    #[arg(long)]
    brokers: String,
    #[arg(long)]
    topic: String,
    /// Records per second; 0: unbounded.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Send every record to this partition (default: spread by the client).
    #[arg(long)]
    partition: Option<i32>,
    file: PathBuf,
}

fn main() -> Result<()> {
    let a = Args::parse();
    let producer: BaseProducer = idgraph_stream::client::producer(&a.brokers).create().context("producer")?;
    let f = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&a.file).with_context(|| format!("open {}", a.file.display()))?);
    let started = Instant::now();
    let mut n = 0u64;
    for line in f.split(b'\n') {
        let line = line?;
        if line.is_empty() {
            continue;
        }
        if a.rate > 0 {
            let due = started + Duration::from_secs_f64(n as f64 / a.rate as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                producer.poll(Duration::ZERO);
                std::thread::sleep(wait);
            }
        }
        let mut rec: BaseRecord<'_, (), [u8]> = BaseRecord::to(&a.topic).payload(line.as_slice());
        if let Some(p) = a.partition {
            rec = rec.partition(p);
        }
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    rec = back;
                    producer.poll(Duration::from_millis(5));
                }
                Err((e, _)) => anyhow::bail!("produce: {e}"),
            }
        }
        n += 1;
    }
    producer.flush(Duration::from_secs(120)).context("flush")?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!("produced {n} records to {} in {secs:.2}s ({:.0}/s)", a.topic, n as f64 / secs.max(1e-9));
    Ok(())
}
