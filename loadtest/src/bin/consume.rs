//! `idgraph-consume`: every record of a topic up to its current end, as
//! NDJSON on stdout: `{"partition","offset","key","value","headers"}`
//! (`value` is null for a tombstone; text values are given as strings, and
//! with `--hex` every value as hex: binary values such as Avro).
//! With `--compact`, only the last record per key (what a compacted topic
//! converges to), tombstoned keys omitted. With `--values`, each record's
//! value alone: `--topic idgraph.profiles --compact --values` prints the
//! current profiles as `idgraph profiles` does (`idgraph-score` input).

use anyhow::{Context, Result};
use clap::Parser;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(about = "Read a Kafka topic to its end as NDJSON")]
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
    /// Keep only the last record per key.
    #[arg(long)]
    compact: bool,
    /// Once at the reported end, stop after this long without a record.
    #[arg(long, default_value_t = 1000)]
    idle_ms: u64,
    /// Print only the record count and the read rate (a raw-consume baseline).
    #[arg(long)]
    count_only: bool,
    /// Print values as lower-case hex (binary values, e.g. Avro outputs).
    #[arg(long)]
    hex: bool,
    /// Print each record's value alone, one per line (tombstones skipped).
    #[arg(long, conflicts_with = "hex")]
    values: bool,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
}

fn text(b: &[u8]) -> serde_json::Value {
    match std::str::from_utf8(b) {
        Ok(s) => serde_json::Value::String(s.to_string()),
        Err(_) => serde_json::Value::String(format!("(binary, {} bytes)", b.len())),
    }
}

fn hex(b: &[u8]) -> serde_json::Value {
    use std::fmt::Write;
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    serde_json::Value::String(s)
}

/// One record as a line: wrapped, or (`values`) its value alone.
fn print(out: &mut impl Write, rec: &serde_json::Value, values: bool) -> std::io::Result<()> {
    match (values, rec["value"].as_str()) {
        (false, _) => writeln!(out, "{rec}"),
        (true, Some(v)) => writeln!(out, "{v}"),
        (true, None) => Ok(()),
    }
}

fn main() -> Result<()> {
    let a = Args::parse();
    let c: BaseConsumer = idgraph_stream::client::consumer(&idgraph_loadtest::cluster(&a.brokers, &a.properties)?, "idgraph-consume")
        .create()
        .context("consumer")?;
    let md = c.fetch_metadata(Some(&a.topic), Duration::from_secs(10)).context("metadata")?;
    let parts = md.topics().first().map(|t| t.partitions().len()).unwrap_or(0);
    anyhow::ensure!(parts > 0, "topic {} not found", a.topic);
    let mut tpl = TopicPartitionList::new();
    let mut ends = Vec::new();
    let mut next = Vec::new();
    for p in 0..parts as i32 {
        let (lo, hi) = c.fetch_watermarks(&a.topic, p, Duration::from_secs(10)).context("watermarks")?;
        if std::env::var_os("IDGRAPH_CONSUME_DEBUG").is_some() {
            eprintln!("partition {p}: low {lo} high {hi}");
        }
        ends.push(hi);
        next.push(lo);
        tpl.add_partition_offset(&a.topic, p, Offset::Beginning)?;
    }
    c.assign(&tpl)?;
    let deadline = Instant::now() + Duration::from_secs(a.timeout);
    let mut last: BTreeMap<Vec<u8>, serde_json::Value> = BTreeMap::new();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let started = Instant::now();
    let mut count = 0u64;
    let mut last_at = started;
    // Some brokers (tansu 0.6) report a high watermark below the log end:
    // past it, read on until the topic has been quiet for `idle`.
    let done = |next: &[i64]| next.iter().zip(&ends).all(|(n, e)| *n >= *e);
    let idle = Duration::from_millis(a.idle_ms);
    let mut last_msg = Instant::now();
    loop {
        anyhow::ensure!(Instant::now() < deadline, "timed out reading {}", a.topic);
        let Some(m) = c.poll(Duration::from_millis(50)) else {
            if done(&next) && last_msg.elapsed() >= idle {
                break;
            }
            continue;
        };
        last_msg = Instant::now();
        let m = m?;
        count += 1;
        last_at = last_msg;
        if a.count_only {
            next[m.partition() as usize] = m.offset() + 1;
            continue;
        }
        let p = m.partition() as usize;
        next[p] = m.offset() + 1;
        let headers: serde_json::Map<String, serde_json::Value> = m
            .headers()
            .map(|h| h.iter().map(|h| (h.key.to_string(), h.value.map_or(serde_json::Value::Null, text))).collect())
            .unwrap_or_default();
        let rec = serde_json::json!({
            "partition": m.partition(), "offset": m.offset(),
            "key": m.key().map(text), "value": m.payload().map(if a.hex { hex } else { text }), "headers": headers,
        });
        if a.compact {
            last.insert(m.key().unwrap_or_default().to_vec(), rec);
        } else {
            print(&mut out, &rec, a.values)?;
        }
    }
    if a.count_only {
        let secs = (last_at - started).as_secs_f64().max(1e-9);
        writeln!(out, "{{\"records\": {count}, \"seconds\": {secs:.3}, \"per_second\": {:.0}}}", count as f64 / secs)?;
    }
    for rec in last.values().filter(|r| !r["value"].is_null()) {
        print(&mut out, rec, a.values)?;
    }
    out.flush()?;
    Ok(())
}
