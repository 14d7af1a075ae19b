//! `idgraph replay`: NDJSON files through the same core as `run`, into a
//! RocksDB state and NDJSON output streams.
//!
//! A reader thread reads and parses lines into batches (never spanning two
//! files); the main thread runs each batch through the partitions to
//! quiescence and encodes the records it dirtied; a writer thread renders
//! and writes the batch's outputs, then commits the dirty records, the
//! input position and the output lengths in one atomic write, while the
//! main thread runs the next batch (ADR 0006). A crash anywhere replays
//! the uncommitted batch to the same result (see `sink`).

use crate::config::Config;
use crate::sink::{Sinks, Stream};
use anyhow::{bail, Context, Result};
use idgraph_core::cluster::Cluster;
use idgraph_core::config::CoreConfig;
use idgraph_core::event::{DropCounts, Touchpoint};
use idgraph_core::golden::{self, ProfileOutput};
use idgraph_core::input::{Format, Parser, RejectReason};
use idgraph_core::normalize::Normalizer;
use idgraph_core::output::{ConsentEvent, LifecycleEvent};
use idgraph_core::partition::{Effects, Partition};
use idgraph_core::profile_id::ProfileId;
use idgraph_state::{self as state, bump, Counters, DirtyWrite, KnownKeys, StoreLoader};
use idgraph_store::{Batch, RocksOptions, RocksStore, Store};
use idgraph_stream::fault;
use rustc_hash::FxHashMap;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Keys the known-keys filter is first sized for (at least; twice the
/// keys already stored), before it grows. 30 MB.
const KNOWN_KEYS_MIN_CAPACITY: u64 = 24_000_000;

/// Options of one replay run.
#[derive(Debug, Clone)]
pub struct ReplayArgs {
    pub format: Format,
    pub state: PathBuf,
    pub out: PathBuf,
    pub files: Vec<PathBuf>,
    /// Print rejects to stderr (the first `max_reported`).
    pub max_reported: u64,
}

enum Item {
    Event(Touchpoint),
    Reject { line: u64, reason: RejectReason, raw: Vec<u8> },
}

struct InBatch {
    file: usize,
    items: Vec<Item>,
    end_offset: u64,
    end_line: u64,
    drops: DropCounts,
}

impl InBatch {
    fn new(file: usize, capacity: usize, offset: u64, line: u64) -> Self {
        Self { file, items: Vec::with_capacity(capacity), end_offset: offset, end_line: line, drops: DropCounts::default() }
    }
}

#[derive(serde::Serialize, serde::Deserialize, Debug, Default, Clone, Copy)]
struct Progress {
    offset: u64,
    line: u64,
}

/// What a run did; also written to `OUT/summary.json`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub lines: u64,
    pub events: u64,
    pub rejects: u64,
    pub rejects_by_reason: Vec<(String, u64)>,
    pub identifiers_dropped_by_reason: Vec<(String, u64)>,
    pub profiles_created: u64,
    pub merges: u64,
    pub splits: u64,
    pub conflicts: u64,
    pub identifiers_shared: u64,
    pub this_run_events: u64,
    pub this_run_seconds: f64,
    pub events_per_second: f64,
    pub batch_p50_ms: f64,
    pub batch_p99_ms: f64,
    pub peak_rss_mb: f64,
    pub partitions: u16,
    pub commands_delivered: u64,
    /// Records read from RocksDB (cache misses, prefetched or not).
    pub store_reads: u64,
    /// Lookups of keys never written, answered by the filter without a read.
    pub store_reads_skipped: u64,
    /// Identifier lookups the owner cache answered without a read.
    pub owner_cache_hits: u64,
    /// Identifier and profile records written to the state (puts and
    /// deletes), and their key and value bytes: what every write, flush and
    /// compaction pays for.
    pub state_records_written: u64,
    pub state_bytes_written: u64,
    /// Where the main thread spent its time: waiting for input, the core,
    /// encoding the dirty records, waiting for the writer thread (outputs
    /// and RocksDB write of the previous batch), cache eviction.
    pub phase_seconds: Phases,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Phases {
    pub input_wait: f64,
    pub core: f64,
    pub encode: f64,
    pub write: f64,
    pub evict: f64,
}

/// A touched profile's output line: rendered on the writer thread from
/// the batch's dirty record (by its index), or already rendered.
enum ProfileLine {
    Dirty(usize),
    Rendered(String),
}

/// One batch for the writer thread: its outputs, then its state.
struct WriteJob {
    /// Progress and counters; the dirty records and the output lengths
    /// are added.
    wb: Batch,
    /// The dirty records, encoded on the writer thread.
    writes: Vec<DirtyWrite>,
    rejects: Vec<String>,
    lifecycle: Vec<LifecycleEvent>,
    consent: Vec<ConsentEvent>,
    profiles: Vec<ProfileLine>,
}

/// State records a batch wrote: how many, and their key and value bytes.
#[derive(Debug, Default, Clone, Copy)]
struct Written {
    records: u64,
    bytes: u64,
}

impl WriteJob {
    /// Appends the batch's lines to the output files and flushes them, then
    /// commits state, progress and the new file lengths in one write: a
    /// crash before the commit cuts the files back and replays the batch.
    fn run(mut self, sinks: &mut Sinks, store: &RocksStore, core: &CoreConfig, out_dir: &Path) -> Result<Written> {
        fault::point("replay.before-outputs");
        for line in &self.rejects {
            sinks.line(Stream::Rejects, line)?;
        }
        // One buffer for every line of the batch.
        let mut json = Vec::with_capacity(1024);
        for le in &self.lifecycle {
            json.clear();
            serde_json::to_writer(&mut json, le)?;
            sinks.line(Stream::Lifecycle, &json)?;
        }
        for ce in &self.consent {
            json.clear();
            serde_json::to_writer(&mut json, ce)?;
            sinks.line(Stream::Consent, &json)?;
        }
        let mut rendered: Vec<u8> = Vec::with_capacity(2048);
        let first = self.wb.op_count();
        // Sized for the batch's records up front (~130 bytes each on
        // average in a 10M-event replay): grown by doubling, the buffer
        // was copied over several times as it filled.
        self.wb.reserve(self.writes.len(), self.writes.len() * 160);
        // A dirty profile is encoded right after it is rendered, while its
        // record is still in this core's cache (it was built on the other
        // one). The batch's order of writes does not matter: the store
        // sorts them.
        let mut writes: Vec<Option<DirtyWrite>> = self.writes.into_iter().map(Some).collect();
        for p in &self.profiles {
            let line = match p {
                ProfileLine::Rendered(line) => line.as_bytes(),
                ProfileLine::Dirty(i) => {
                    let Some(w) = writes.get_mut(*i).and_then(Option::take) else {
                        bail!("a touched profile's record is missing from its batch");
                    };
                    let Some((id, rec)) = w.profile() else {
                        bail!("a touched profile's record is missing from its batch");
                    };
                    rendered.clear();
                    let some = golden::output_into(&mut rendered, id, rec, core);
                    w.encode_into(&mut self.wb);
                    if !some {
                        continue;
                    }
                    rendered.as_slice()
                }
            };
            sinks.line(Stream::Profiles, line)?;
        }
        let lens = sinks.flush()?;
        for w in writes.into_iter().flatten() {
            w.encode_into(&mut self.wb);
        }
        let written = Written {
            records: (self.wb.op_count() - first) as u64,
            bytes: self.wb.ops_from(first).map(|o| (o.key.len() + o.value.map_or(0, <[u8]>::len)) as u64).sum(),
        };
        state::put_meta(&mut self.wb, &out_key(out_dir), &lens);
        fault::point("replay.before-commit");
        store.write(self.wb)?;
        fault::point("replay.after-commit");
        Ok(written)
    }
}

fn progress_key(path: &Path) -> String {
    format!("progress:{}", path.display())
}

fn out_key(dir: &Path) -> String {
    format!("out:{}", dir.display())
}

/// Peak resident set size of this process, in MiB (Linux).
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
        .map_or(0.0, |kb| kb / 1024.0)
}

fn reader(files: Vec<(PathBuf, Progress)>, mut parser: Parser, batch_size: usize, tx: crossbeam_channel::Sender<Result<InBatch>>) {
    let send = |b: Result<InBatch>| tx.send(b).is_ok();
    for (fi, (path, start)) in files.into_iter().enumerate() {
        let f = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                send(Err(anyhow::anyhow!("cannot open input {}: {e}", path.display())));
                return;
            }
        };
        let mut r = BufReader::with_capacity(1 << 20, f);
        if let Err(e) = r.seek(SeekFrom::Start(start.offset)) {
            send(Err(anyhow::anyhow!("cannot seek in {}: {e}", path.display())));
            return;
        }
        let (mut offset, mut line_no) = (start.offset, start.line);
        let mut buf = Vec::with_capacity(4096);
        let mut batch = InBatch::new(fi, batch_size, offset, line_no);
        loop {
            buf.clear();
            // Bounded read: a line longer than the event limit is consumed
            // but not kept whole.
            let n = match (&mut r).take(idgraph_core::input::MAX_EVENT_BYTES as u64 + 2).read_until(b'\n', &mut buf) {
                Ok(n) => n,
                Err(e) => {
                    send(Err(anyhow::anyhow!("cannot read {}: {e}", path.display())));
                    return;
                }
            };
            if n == 0 {
                break;
            }
            let mut consumed = n as u64;
            if buf.last() != Some(&b'\n') && n > idgraph_core::input::MAX_EVENT_BYTES {
                // Skip the rest of an oversized line.
                let mut skip = Vec::new();
                consumed += r.read_until(b'\n', &mut skip).unwrap_or(0) as u64;
            }
            offset += consumed;
            line_no += 1;
            let text = buf.strip_suffix(b"\n").unwrap_or(&buf);
            let text = text.strip_suffix(b"\r").unwrap_or(text);
            if !text.iter().all(u8::is_ascii_whitespace) {
                let item = if consumed as usize > idgraph_core::input::MAX_EVENT_BYTES + 1 {
                    Item::Reject {
                        line: line_no,
                        reason: RejectReason::TooLarge { bytes: consumed as usize },
                        raw: text[..text.len().min(1024)].to_vec(),
                    }
                } else {
                    match parser.parse(text) {
                        Ok(ev) => Item::Event(ev),
                        Err(reason) => Item::Reject { line: line_no, reason, raw: text.to_vec() },
                    }
                };
                batch.items.push(item);
            }
            batch.end_offset = offset;
            batch.end_line = line_no;
            if batch.items.len() >= batch_size {
                batch.drops = std::mem::take(&mut parser.drops);
                let next = InBatch::new(fi, batch_size, offset, line_no);
                if !send(Ok(std::mem::replace(&mut batch, next))) {
                    return;
                }
            }
        }
        batch.drops = std::mem::take(&mut parser.drops);
        if !send(Ok(batch)) {
            return;
        }
    }
}

pub fn run(cfg: &Config, args: &ReplayArgs) -> Result<Summary> {
    let core = Arc::new(cfg.core()?);
    let ropts = RocksOptions {
        block_cache_bytes: cfg.state.block_cache_mb as usize * (1 << 20),
        write_buffer_bytes: cfg.state.write_buffer_mb as usize * (1 << 20),
        // Replay redoes its input from the position stored with the state
        // (ADR 0006): a crash loses at most the batches since the last
        // memtable flush, redone on restart.
        wal: false,
        ..Default::default()
    };
    // Inputs first: a missing file fails before any state or output exists.
    let inputs: Vec<PathBuf> = args
        .files
        .iter()
        .map(|f| std::fs::canonicalize(f).with_context(|| format!("input file {} not found", f.display())))
        .collect::<Result<_>>()?;
    let store = RocksStore::open(&args.state, &ropts)?;
    let partitions = state::check_partitions(&store, cfg.state.partitions)?;
    state::check_types(&store, &core, true)?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create out dir {}", args.out.display()))?;
    let out_dir = std::fs::canonicalize(&args.out)?;
    let committed: [u64; 4] = state::get_meta(&store, &out_key(&out_dir))?.unwrap_or([0; 4]);
    let mut sinks = Sinks::open(&out_dir, &committed).with_context(|| format!("cannot open outputs in {}", out_dir.display()))?;
    let mut counters: Counters = state::get_meta(&store, "counters")?.unwrap_or_default();
    let mut known = KnownKeys::build(&store, KNOWN_KEYS_MIN_CAPACITY)?;
    let base = counters.clone();

    let mut files = Vec::new();
    for p in inputs {
        let start: Progress = state::get_meta(&store, &progress_key(&p))?.unwrap_or_default();
        files.push((p, start));
    }
    let paths: Vec<PathBuf> = files.iter().map(|(p, _)| p.clone()).collect();
    let parser = Parser::new(args.format, cfg.mapping_for(args.format), Normalizer::new(core.clone()));
    let (tx, rx) = crossbeam_channel::bounded(4);
    let batch_size = cfg.replay.batch_size;
    let reader_thread = std::thread::Builder::new().name("replay-reader".into()).spawn(move || reader(files, parser, batch_size, tx))?;

    let mut cluster = Cluster::new(partitions, core.clone()).with_owner_cache(cfg.state.owner_cache_mb as usize * (1 << 20));
    let cache_per_partition = (cfg.state.cache_entries / partitions as usize).max(1024);
    let started = Instant::now();
    let mut latencies: Vec<f64> = Vec::new();
    let mut run_events = 0u64;
    let mut reported = 0u64;
    let mut ph = Phases::default();
    let mut store_reads = 0u64;
    let mut store_reads_skipped = 0u64;
    let (mut records_written, mut bytes_written) = (0u64, 0u64);
    let mut tw = Instant::now();
    // Batch N's outputs are rendered and written, and its state committed
    // to RocksDB, on a second thread while batch N+1 runs (ADR 0006). One
    // job in flight at most: before a batch hands its job over, the previous
    // one has landed, so the records the eviction below drops are on the
    // store; the batch just handed over keeps its records cached until then.
    std::thread::scope(|scope| -> Result<()> {
        let (wtx, wrx) = crossbeam_channel::bounded::<WriteJob>(1);
        let (dtx, drx) = crossbeam_channel::bounded::<Result<Written>>(1);
        let store = &store;
        let (core_w, out_dir_w) = (core.clone(), out_dir.clone());
        scope.spawn(move || {
            for job in wrx {
                let r = job.run(&mut sinks, store, &core_w, &out_dir_w);
                let failed = r.is_err();
                if dtx.send(r).is_err() || failed {
                    return;
                }
            }
        });
        let mut in_flight = false;
        for batch in rx {
            let batch = batch?;
            let t0 = Instant::now();
            ph.input_wait += (t0 - tw).as_secs_f64();
            let file_path = &paths[batch.file];
            let mut fx = Effects::default();
            let mut rejects = Vec::new();
            for item in batch.items {
                counters.lines += 1;
                match item {
                    Item::Event(ev) => {
                        counters.events += 1;
                        run_events += 1;
                        cluster.submit(ev);
                    }
                    Item::Reject { line, reason, raw } => {
                        counters.rejects += 1;
                        bump(&mut counters.rejects_by_reason, reason.code(), 1);
                        if reported < args.max_reported {
                            eprintln!("{}:{line}: rejected: {reason}", file_path.display());
                            reported += 1;
                        }
                        let rec = serde_json::json!({
                            "file": file_path.display().to_string(), "line": line,
                            "reason": reason.code(), "message": reason.to_string(),
                            "raw": String::from_utf8_lossy(&raw),
                        });
                        rejects.push(rec.to_string());
                    }
                }
            }
            for (name, n) in batch.drops.iter() {
                bump(&mut counters.drops_by_reason, name, n);
            }
            let mut loader = StoreLoader::new(store, &known);
            cluster.run(&mut loader, &mut fx);
            store_reads += loader.reads;
            store_reads_skipped += loader.skipped;
            if let Some(e) = loader.error.take() {
                bail!(e);
            }
            let t1 = Instant::now();
            ph.core += (t1 - t0).as_secs_f64();
            drop(loader);
            // The dirty records, shared with the writer thread, which
            // encodes them and renders the touched profiles from them.
            let mut writes: Vec<DirtyWrite> = Vec::new();
            let mut profiles = Vec::new();
            let mut at: FxHashMap<ProfileId, usize> = FxHashMap::default();
            for part in &mut cluster.parts {
                at.clear();
                let first = writes.len();
                state::take_dirty_into(part, &mut known, &mut writes);
                for (i, w) in writes.iter().enumerate().skip(first) {
                    if let Some((id, _)) = w.profile() {
                        at.insert(id, i);
                    }
                }
                for id in part.take_touched() {
                    if let Some(&i) = at.get(&id) {
                        profiles.push(ProfileLine::Dirty(i));
                        continue;
                    }
                    // A touched record is dirty (it was taken and put back).
                    // One that is not would still be cached (eviction comes
                    // later): rendered from the cache, never from the store,
                    // which may not hold the previous batch yet.
                    match golden::output(id, part.cached_profile(id), &core) {
                        Some(ProfileOutput::Profile(line)) => profiles.push(ProfileLine::Rendered(line)),
                        Some(ProfileOutput::Gone(reason)) => profiles.push(ProfileLine::Rendered(golden::tombstone(id, reason))),
                        None => {}
                    }
                }
            }
            let t2 = Instant::now();
            ph.encode += (t2 - t1).as_secs_f64();
            let stats = cluster.stats();
            counters.merges = base.merges + stats.merges;
            counters.splits = base.splits + stats.splits;
            counters.conflicts = base.conflicts + stats.conflicts;
            counters.shared = base.shared + stats.identifiers_shared;
            counters.created = base.created + stats.profiles_created;
            let mut wb = Batch::default();
            state::put_meta(&mut wb, &progress_key(file_path), &Progress { offset: batch.end_offset, line: batch.end_line });
            state::put_meta(&mut wb, "counters", &counters);
            let job = WriteJob { wb, writes, rejects, lifecycle: fx.lifecycle, consent: fx.consent, profiles };
            if std::mem::replace(&mut in_flight, true) {
                let w = drx.recv().map_err(|_| anyhow::anyhow!("the state writer stopped"))??;
                (records_written, bytes_written) = (records_written + w.records, bytes_written + w.bytes);
            }
            wtx.send(job).map_err(|_| anyhow::anyhow!("the state writer stopped"))?;
            let t3 = Instant::now();
            ph.write += (t3 - t2).as_secs_f64();
            for part in &mut cluster.parts {
                part.end_batch(cache_per_partition, true);
            }
            tw = Instant::now();
            ph.evict += (tw - t3).as_secs_f64();
            latencies.push(t0.elapsed().as_secs_f64() * 1000.0);
        }
        drop(wtx);
        if in_flight {
            let t = Instant::now();
            let w = drx.recv().map_err(|_| anyhow::anyhow!("the state writer stopped"))??;
            (records_written, bytes_written) = (records_written + w.records, bytes_written + w.bytes);
            ph.write += t.elapsed().as_secs_f64();
        }
        Ok(())
    })?;
    reader_thread.join().map_err(|_| anyhow::anyhow!("reader thread panicked"))?;
    let this_run_rejects = counters.rejects - base.rejects;
    if this_run_rejects > reported {
        eprintln!("... {} more rejected lines not shown (see rejects.ndjson)", this_run_rejects - reported);
    }
    // Memtables to table files and the WAL synced: the state is durable and
    // its size on disk is what it will stay.
    store.flush()?;
    let secs = started.elapsed().as_secs_f64();
    latencies.sort_by(|a, b| a.total_cmp(b));
    let pct = |q: f64| latencies.get(((latencies.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0.0);
    let summary = Summary {
        lines: counters.lines,
        events: counters.events,
        rejects: counters.rejects,
        rejects_by_reason: counters.rejects_by_reason.clone(),
        identifiers_dropped_by_reason: counters.drops_by_reason.clone(),
        profiles_created: counters.created,
        merges: counters.merges,
        splits: counters.splits,
        conflicts: counters.conflicts,
        identifiers_shared: counters.shared,
        this_run_events: run_events,
        this_run_seconds: secs,
        events_per_second: if secs > 0.0 { run_events as f64 / secs } else { 0.0 },
        batch_p50_ms: pct(0.5),
        batch_p99_ms: pct(0.99),
        peak_rss_mb: peak_rss_mb(),
        partitions,
        commands_delivered: cluster.delivered,
        store_reads,
        store_reads_skipped,
        owner_cache_hits: cluster.parts.iter().map(Partition::owner_cache_hits).sum(),
        state_records_written: records_written,
        state_bytes_written: bytes_written,
        phase_seconds: ph,
    };
    std::fs::write(out_dir.join("summary.json"), serde_json::to_string_pretty(&summary)?)?;
    Ok(summary)
}
