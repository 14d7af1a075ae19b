//! A core batch's delivery on a thread of its own (ADR 0009): the broker
//! acknowledges batch N while the worker polls and applies batch N+1.
//!
//! One delivery at a time. The worker hands a batch's records over once
//! its state is written and collects the result before it writes the next
//! batch (or before it restores, claims, gives partitions up or stops), so
//! the order of everything on the topics and in the store is the order of
//! the synchronous loop; only the waiting overlaps.

use crate::envelope::Envelope;
use crate::error::StreamError;
use crate::outbox::{count_by_dest, Dest, OutRecord, Sender};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A batch's records: everything else first (the command envelopes,
/// encoded on the delivery thread, then the outputs and changelog
/// records), then its changelog markers.
#[derive(Debug, Default)]
pub struct Job {
    pub out: Vec<OutRecord>,
    /// (destination partition of `idgraph.cmd`, envelope).
    pub cmds: Vec<(u16, Envelope)>,
    pub markers: Vec<OutRecord>,
}

/// What became of a [`Job`].
#[derive(Debug)]
pub struct Delivered {
    /// (index in `job.markers`, offset) of each marker that landed.
    pub landed: Result<Vec<(usize, i64)>, StreamError>,
    /// Records produced, by [`Dest`] index (the job itself is freed on the
    /// delivery thread).
    pub counts: [u64; Dest::ALL.len()],
    /// Time to have `out` acknowledged, then the markers.
    pub out_time: Duration,
    pub markers_time: Duration,
    /// When the markers were acknowledged (or the delivery failed).
    pub acked_at: Instant,
    pub acked_ms: i64,
}

/// Whether a delivery is in flight. A revocation waits for it inside the
/// rebalance, so a partition leaves this instance with its changelog
/// complete (ADR 0004), as it did when each batch was delivered before the
/// next poll.
#[derive(Debug, Default)]
pub struct InFlight {
    busy: Mutex<bool>,
    idle: Condvar,
}

impl InFlight {
    fn set(&self, busy: bool) {
        if let Ok(mut b) = self.busy.lock() {
            *b = busy;
        }
        if !busy {
            self.idle.notify_all();
        }
    }

    /// Blocks while a delivery is in flight.
    pub fn wait_idle(&self) {
        let Ok(mut b) = self.busy.lock() else { return };
        while *b {
            match self.idle.wait(b) {
                Ok(next) => b = next,
                Err(_) => return,
            }
        }
    }
}

/// Clears the in-flight flag when dropped.
struct Idle(Arc<InFlight>);

impl Drop for Idle {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

/// The delivery thread and its two channels.
#[derive(Debug)]
pub struct Tail {
    jobs: SyncSender<Job>,
    done: Receiver<Delivered>,
    in_flight: Arc<InFlight>,
    pending: bool,
}

impl Tail {
    pub fn start(sender: Arc<Sender>, in_flight: Arc<InFlight>) -> Result<Self, StreamError> {
        let (jobs, jobs_rx) = mpsc::sync_channel::<Job>(1);
        let (done_tx, done) = mpsc::channel();
        let flag = in_flight.clone();
        std::thread::Builder::new()
            .name("deliver".into())
            .spawn(move || {
                // However the thread ends (a panic included), nothing stays
                // "in flight" for a revocation to wait for.
                let _idle = Idle(flag.clone());
                for job in jobs_rx {
                    let t = Instant::now();
                    let Job { out: outputs, cmds, markers } = job;
                    // Commands first: they are the next batches' input, and
                    // the worker, its earlier input used up, waits for them.
                    // In practice librdkafka sends what it was handed first
                    // first; behind a batch's outputs the commands landed
                    // 200-400 ms later at 100k records. Only the markers'
                    // place matters to a restore (ADR 0004).
                    let mut out: Vec<OutRecord> = Vec::with_capacity(cmds.len() + outputs.len());
                    out.extend(cmds.iter().map(|(d, env)| OutRecord::cmd(*d, env)));
                    drop(cmds);
                    out.extend(outputs);
                    let mut counts = count_by_dest(&out);
                    let state_records = counts[Dest::Changelog as usize];
                    counts[Dest::Changelog as usize] += markers.len() as u64;
                    let delivered = sender.deliver(&out);
                    let tm = Instant::now();
                    // Counted only where the batch wrote state: its records
                    // on the changelog, its markers not.
                    if delivered.is_ok() && state_records > 0 {
                        crate::fault::point("run.before-markers");
                    }
                    let landed = delivered.and_then(|()| sender.deliver_tracked(&markers, |_| true));
                    let acked_at = Instant::now();
                    let acked_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
                    let d = Delivered { landed, counts, out_time: tm - t, markers_time: acked_at - tm, acked_at, acked_ms };
                    // The flag drops before the result is sent: the worker
                    // hands the next batch over (raising it) only after it
                    // received this one, so a late drop cannot clear the
                    // next batch's flag. A revocation only needs the
                    // delivery done; the worker collects the result after.
                    flag.set(false);
                    if done_tx.send(d).is_err() {
                        break;
                    }
                    drop((out, markers));
                }
            })
            .map_err(|e| StreamError::Internal(format!("cannot start the delivery thread: {e}")))?;
        Ok(Self { jobs, done, in_flight, pending: false })
    }

    pub fn pending(&self) -> bool {
        self.pending
    }

    /// Hands a batch over; the previous one must have been collected.
    pub fn submit(&mut self, job: Job) -> Result<(), StreamError> {
        if self.pending {
            return Err(StreamError::Internal("a batch was handed to the delivery thread before the previous one was collected".into()));
        }
        self.in_flight.set(true);
        if self.jobs.send(job).is_err() {
            self.in_flight.set(false);
            return Err(StreamError::Internal("the delivery thread stopped".into()));
        }
        self.pending = true;
        Ok(())
    }

    /// The result of the batch handed over last (waiting for it), or `None`
    /// when none is pending.
    pub fn collect(&mut self) -> Result<Option<Delivered>, StreamError> {
        if !self.pending {
            return Ok(None);
        }
        self.pending = false;
        self.done.recv().map(Some).map_err(|_| StreamError::Internal("the delivery thread stopped".into()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_batch_is_collected_once_with_the_flag_down_and_never_twice() {
        // No broker: an empty batch needs none (nothing to acknowledge).
        let sender = Arc::new(
            Sender::new(
                &crate::client::Cluster::plain("127.0.0.1:9"),
                crate::config::Compression::None,
                crate::topics::Topics::new("idgraph"),
            )
            .unwrap(),
        );
        let flag = Arc::new(InFlight::default());
        let mut tail = Tail::start(sender, flag.clone()).unwrap();
        assert!(tail.collect().unwrap().is_none(), "nothing handed over");
        for _ in 0..3 {
            tail.submit(Job::default()).unwrap();
            assert!(tail.pending());
            assert!(tail.submit(Job::default()).is_err(), "a second batch before the first is collected");
            let d = tail.collect().unwrap().unwrap();
            assert_eq!(d.landed.unwrap(), vec![]);
            assert!(!tail.pending());
            // The flag dropped before the result came back.
            assert!(!*flag.busy.lock().unwrap());
            flag.wait_idle();
        }
    }

    #[test]
    fn waiting_for_idle_returns_only_once_the_delivery_is_done() {
        let f = Arc::new(InFlight::default());
        f.wait_idle(); // nothing in flight: at once
        f.set(true);
        let g = f.clone();
        let t = Instant::now();
        let h = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            g.set(false);
        });
        f.wait_idle();
        assert!(t.elapsed() >= Duration::from_millis(50));
        h.join().unwrap();
    }
}
