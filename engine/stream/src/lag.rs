//! The core's consumer lag per partition (`idgraph_core_cmd_lag_records`),
//! measured on a thread of its own.
//!
//! The lag is the broker's high watermark of each owned `idgraph.cmd`
//! partition minus the next offset the worker reads. The watermark takes a
//! round trip to the broker per partition, up to 500 ms each when the
//! broker is slow. The worker's thread used to ask once a second, so a
//! slow broker could hold the batch loop for up to half a second per owned
//! partition; through tansu under load a round of four took 1-7 ms, on a
//! connection of its own. The worker now only publishes its positions (one
//! atomic store per partition per batch); this thread, with its own
//! client, asks the broker and sets the gauges.

use crate::client::{self, Cluster};
use crate::error::StreamError;
use crate::metrics::Metrics;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the gauges are refreshed.
const EVERY: Duration = Duration::from_secs(1);
/// How long one watermark query may take.
const QUERY_TIMEOUT: Duration = Duration::from_millis(500);
/// A position that says the partition is not read here.
const NOT_OWNED: i64 = -1;

/// The lag thread and the positions the worker shares with it.
pub struct LagProbe {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    /// Per partition: the next offset the worker reads, or [`NOT_OWNED`].
    positions: Vec<AtomicI64>,
    quit: AtomicBool,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for LagProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LagProbe").field("partitions", &self.shared.positions.len()).finish_non_exhaustive()
    }
}

impl LagProbe {
    /// Starts the thread for `partitions` partitions of `topic`.
    pub fn start(cluster: &Cluster, topic: &str, partitions: u16, metrics: Arc<Metrics>) -> Result<Self, StreamError> {
        let client: BaseConsumer = client::admin(cluster).create().map_err(StreamError::kafka("lag client"))?;
        let shared = Arc::new(Shared {
            positions: (0..partitions).map(|_| AtomicI64::new(NOT_OWNED)).collect(),
            quit: AtomicBool::new(false),
            metrics,
        });
        let (s, topic) = (shared.clone(), topic.to_string());
        let thread = std::thread::Builder::new()
            .name("lag".into())
            .spawn(move || s.run(&client, &topic))
            .map_err(|e| StreamError::Internal(format!("cannot start the lag thread: {e}")))?;
        Ok(Self { shared, thread: Some(thread) })
    }

    /// Partition `p` is read here from `next` on, or not at all (`None`;
    /// its gauge keeps its last value until [`LagProbe::forget`]).
    pub fn publish(&self, p: u16, next: Option<i64>) {
        if let Some(pos) = self.shared.positions.get(p as usize) {
            pos.store(next.unwrap_or(NOT_OWNED), Ordering::Relaxed);
        }
    }

    /// Partition `p` left this process: no position, no gauge.
    pub fn forget(&self, p: u16) {
        self.publish(p, None);
        self.shared.metrics.cmd_lag.remove(&p.to_string());
    }
}

impl Shared {
    fn run(&self, client: &BaseConsumer, topic: &str) {
        let mut next = Instant::now() + EVERY;
        while !self.quit.load(Ordering::Relaxed) {
            if Instant::now() < next {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            next = Instant::now() + EVERY;
            for (p, pos) in self.positions.iter().enumerate() {
                if self.quit.load(Ordering::Relaxed) {
                    return;
                }
                if pos.load(Ordering::Relaxed) == NOT_OWNED {
                    continue;
                }
                // A broker that does not answer one query will not answer
                // the next: the round ends (shutdown waits at most one
                // query), and the gauges keep their values until the next.
                let Ok((_, hi)) = client.fetch_watermarks(topic, p as i32, QUERY_TIMEOUT) else { break };
                // Read again: the worker moves on while the broker answers.
                let at = pos.load(Ordering::Relaxed);
                if hi < 0 || at == NOT_OWNED {
                    continue;
                }
                let label = p.to_string();
                self.metrics.cmd_lag.set(&label, (hi - at).max(0) as u64);
                // A partition forgotten since the check above: its gauge
                // goes (the worker's removal may have come before our set).
                if pos.load(Ordering::Relaxed) == NOT_OWNED {
                    self.metrics.cmd_lag.remove(&label);
                }
            }
        }
    }
}

impl Drop for LagProbe {
    fn drop(&mut self) {
        self.shared.quit.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(n: u16) -> (LagProbe, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::default());
        // Nothing listens there: the thread's queries fail and set nothing.
        let cluster = Cluster::plain("127.0.0.1:1");
        (LagProbe::start(&cluster, "idgraph.cmd", n, metrics.clone()).expect("lag thread"), metrics)
    }

    #[test]
    fn the_worker_publishes_positions_and_forgetting_removes_the_gauge() {
        let (lag, metrics) = probe(2);
        lag.publish(1, Some(42));
        assert_eq!(lag.shared.positions[1].load(Ordering::Relaxed), 42);
        assert_eq!(lag.shared.positions[0].load(Ordering::Relaxed), NOT_OWNED);
        metrics.cmd_lag.set("1", 7);
        lag.forget(1);
        assert_eq!(lag.shared.positions[1].load(Ordering::Relaxed), NOT_OWNED);
        let text = metrics.render();
        assert!(!text.contains("idgraph_core_cmd_lag_records{partition=\"1\"}"), "{text}");
        // A partition out of range is ignored, not a panic.
        lag.publish(9, Some(1));
    }

    #[test]
    fn dropping_the_probe_stops_its_thread() {
        let (lag, _) = probe(1);
        let t = Instant::now();
        drop(lag);
        assert!(t.elapsed() < Duration::from_secs(5));
    }
}
