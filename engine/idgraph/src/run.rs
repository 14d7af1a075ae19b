//! `idgraph run`: the streaming engine on the configured broker, or on the
//! embedded one when `kafka.brokers` is not set.

use crate::config::Config;
use anyhow::{Context, Result};
use idgraph_core::input::{Format, InputMapping};
use idgraph_stream::client::Cluster;
use idgraph_stream::embedded::Embedded;
use idgraph_stream::topics::Topics;
use idgraph_stream::{EngineConfig, InputSpec};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The input used when the config names none: Segment-spec JSON on
/// `touchpoints`.
pub const DEFAULT_INPUT: &str = "touchpoints";

pub fn run(cfg: &Config) -> Result<()> {
    let core = Arc::new(cfg.core()?);
    let inputs: Vec<InputSpec> = if cfg.inputs.is_empty() {
        vec![InputSpec { topic: DEFAULT_INPUT.into(), format: Format::Segment, mapping: InputMapping::default(), avro: None }]
    } else {
        cfg.inputs
            .iter()
            .map(|i| InputSpec { topic: i.topic.clone(), format: i.json_shape(), mapping: i.mapping(), avro: i.avro() })
            .collect()
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        // The first signal stops gracefully; a second one, while the first
        // is being honoured (say the broker is gone), exits at once.
        signal_hook::flag::register_conditional_shutdown(sig, 1, stop.clone()).context("cannot install the signal handler")?;
        signal_hook::flag::register(sig, stop.clone()).context("cannot install the signal handler")?;
    }
    // Until the engine runs (topics checked, state opened, HTTP up) there
    // is no batch to finish: a stop exits at once instead of waiting out a
    // broker's timeouts (a pod's grace period is shorter).
    let started = Arc::new(AtomicBool::new(false));
    {
        let (stop, started) = (stop.clone(), started.clone());
        std::thread::Builder::new()
            .name("start-up".into())
            .spawn(move || {
                while !started.load(Ordering::Relaxed) {
                    if stop.load(Ordering::Relaxed) {
                        tracing::info!("stopped during start-up");
                        std::process::exit(0);
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            })
            .context("cannot start the start-up watch")?;
    }
    let p = cfg.state.partitions;
    let (brokers, embedded) = match &cfg.kafka.brokers {
        Some(b) => (b.clone(), None),
        None => {
            let topics = Topics::new(&cfg.kafka.topic_prefix);
            let mut specs: Vec<(&str, i32)> = topics.specs(p).into_iter().map(|(n, k, _)| (n, k)).collect();
            specs.extend(inputs.iter().map(|i| (i.topic.as_str(), p as i32)));
            let e = Embedded::start(&specs)?;
            (e.bootstrap(), Some(e))
        }
    };
    let mut out = std::io::stdout();
    writeln!(out, "kafka bootstrap: {brokers}")?;
    if embedded.is_some() {
        writeln!(out, "embedded broker (no kafka.brokers configured): produce to `{}`, read the outputs from it", inputs[0].topic)?;
    }
    out.flush()?;
    // The embedded broker starts empty every time, so its state must too: it
    // lives in `<state.dir>/embedded`, cleared at start.
    let state_dir = if embedded.is_some() {
        let d = cfg.state.dir.join("embedded");
        if d.exists() {
            std::fs::remove_dir_all(&d).with_context(|| format!("cannot clear {}", d.display()))?;
        }
        d
    } else {
        cfg.state.dir.clone()
    };
    let cluster = Cluster { brokers, properties: cfg.kafka.client.pairs() };
    let ecfg = EngineConfig {
        cluster,
        group_id: cfg.kafka.group_id.clone(),
        topic_prefix: cfg.kafka.topic_prefix.clone(),
        replication_factor: cfg.kafka.replication_factor,
        input_start: cfg.kafka.input_start,
        compression: cfg.kafka.compression,
        inputs,
        partitions: p,
        state_dir,
        block_cache_mb: cfg.state.block_cache_mb,
        write_buffer_mb: cfg.state.write_buffer_mb,
        cache_entries: cfg.state.cache_entries,
        owner_cache_bytes: cfg.state.owner_cache_mb as usize * (1 << 20),
        http_listen: cfg.http.listen.clone(),
        max_batch_records: cfg.run.batch_records,
        batch_linger_ms: cfg.run.batch_linger_ms,
        create_topics: embedded.is_none(),
        outputs: cfg.outputs.spec(),
        core,
    };
    idgraph_stream::run(ecfg, stop, |s| {
        started.store(true, Ordering::Relaxed);
        let t = &s.topics;
        let mut out = std::io::stdout();
        let _ = writeln!(out, "http: http://{}/metrics  /healthz  /readyz", s.http);
        let _ = writeln!(out, "outputs: {} (compacted, key = profile id), {}, {}, {}", t.profiles, t.lifecycle, t.consent, t.rejects);
        let _ = out.flush();
    })?;
    // The embedded broker lives until the process exits: torn down here,
    // its own client logged two `AllBrokersDown` errors on every clean
    // stop. Its data is in memory and its state dir is cleared at start.
    std::mem::forget(embedded);
    tracing::info!("stopped: the last batch delivered and committed, the state flushed");
    Ok(())
}
