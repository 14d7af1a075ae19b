//! `idgraph-produce`: NDJSON lines to a Kafka topic, one record per line,
//! at a bounded rate (or as fast as the broker takes them), lz4-compressed
//! like production producers; `--avro-schema` encodes each line as Avro
//! in the Confluent wire format. Prints the count and the rate.

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
    /// A librdkafka property for the connection, `KEY=VALUE` (TLS, SASL);
    /// repeatable: `-X security.protocol=ssl -X ssl.ca.location=ca.pem`.
    /// Secrets are better given as IDGRAPH__KAFKA__CLIENT__SASL_PASSWORD.
    #[arg(short = 'X', long = "property", value_name = "KEY=VALUE")]
    properties: Vec<String>,
    #[arg(long)]
    topic: String,
    /// Records per second; 0: unbounded.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Send every record to this partition (default: spread by the client).
    #[arg(long)]
    partition: Option<i32>,
    /// Encode each JSON line as Avro with this schema (Confluent wire
    /// format) instead of sending it as is.
    #[arg(long)]
    avro_schema: Option<PathBuf>,
    /// The schema ID written in front of each Avro record.
    #[arg(long, default_value_t = 1)]
    schema_id: u32,
    file: PathBuf,
}

fn main() -> Result<()> {
    let a = Args::parse();
    let producer: BaseProducer =
        idgraph_stream::client::producer(&idgraph_loadtest::cluster(&a.brokers, &a.properties)?, idgraph_stream::config::Compression::Lz4)
            .create()
            .context("producer")?;
    // The clock starts with a producer that can send: the records' times
    // are the latency's origin, and a cold producer held the first ones
    // up to a second (a real producer has long been running).
    idgraph_stream::client::warm_up(producer.client(), &a.topic);
    let f = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&a.file).with_context(|| format!("open {}", a.file.display()))?);
    let schema = match &a.avro_schema {
        Some(p) => Some(
            apache_avro::Schema::parse_str(&std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))?)
                .with_context(|| format!("parse {}", p.display()))?,
        ),
        None => None,
    };
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
        let avro;
        let payload = match &schema {
            None => line.as_slice(),
            Some(s) => {
                let json: serde_json::Value = serde_json::from_slice(&line).with_context(|| format!("line {}: not JSON", n + 1))?;
                avro = idgraph_stream::avro::encode(json, s, a.schema_id).map_err(|e| anyhow::anyhow!("line {}: {e}", n + 1))?;
                avro.as_slice()
            }
        };
        let mut rec: BaseRecord<'_, (), [u8]> = BaseRecord::to(&a.topic).payload(payload);
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
