//! P partitions in one process over an in-memory bus.
//!
//! Delivery is deterministic and goes in waves: every command queued when a
//! wave starts is delivered, partition by partition in order; what they
//! produce forms the next wave. Before each wave the loader may prefetch the
//! records the wave will touch (one multi-get instead of many gets).
//! [`Cluster::run`] returns when no command is left anywhere (quiescence).

use crate::command::Command;
use crate::config::CoreConfig;
use crate::event::Touchpoint;
use crate::partition::{Effects, Loader, Partition, Stats};
use std::collections::VecDeque;
use std::sync::Arc;

#[derive(Debug)]
pub struct Cluster {
    pub parts: Vec<Partition>,
    inbox: Vec<VecDeque<Command>>,
    /// Commands delivered so far (a measure of protocol cost).
    pub delivered: u64,
}

impl Cluster {
    pub fn new(partitions: u16, cfg: Arc<CoreConfig>) -> Self {
        assert!(partitions >= 1, "at least one partition");
        Self {
            parts: (0..partitions).map(|p| Partition::new(p, partitions, cfg.clone())).collect(),
            inbox: (0..partitions).map(|_| VecDeque::new()).collect(),
            delivered: 0,
        }
    }

    pub fn partitions(&self) -> u16 {
        self.parts.len() as u16
    }

    /// Queues an input event at its anchor's partition.
    pub fn submit(&mut self, ev: Touchpoint) {
        if ev.idents.is_empty() {
            return;
        }
        let cmd = Command::Route { ev: Box::new(ev), probe: 0 };
        let p = cmd.partition(self.partitions()) as usize;
        self.inbox[p].push_back(cmd);
    }

    /// Delivers commands until none is left.
    pub fn run(&mut self, loader: &mut dyn Loader, out: &mut Effects) {
        let n = self.parts.len();
        let mut fx = Effects::default();
        loop {
            let wave: Vec<VecDeque<Command>> = self.inbox.iter_mut().map(std::mem::take).collect();
            if wave.iter().all(VecDeque::is_empty) {
                break;
            }
            // Only each command's own target: a route that finds its first
            // identifier owned (most do) reads no other, and prefetching the
            // event's other identifiers read a quarter of all records for
            // nothing (a later probe reads its record when it gets there).
            let mut targets: Vec<(u16, crate::command::Target<'_>)> = Vec::with_capacity(wave.iter().map(VecDeque::len).sum());
            for (p, cmds) in wave.iter().enumerate() {
                for c in cmds {
                    let t = c.target();
                    if !self.parts[p].is_cached(t) {
                        targets.push((p as u16, t));
                    }
                }
            }
            if !targets.is_empty() {
                loader.prefetch(&targets);
            }
            drop(targets);
            for (p, cmds) in wave.into_iter().enumerate() {
                for cmd in cmds {
                    self.delivered += 1;
                    self.parts[p].handle(cmd, loader, &mut fx);
                    for c in fx.cmds.drain(..) {
                        let d = c.partition(n as u16) as usize;
                        self.inbox[d].push_back(c);
                    }
                }
            }
        }
        out.lifecycle.append(&mut fx.lifecycle);
        out.consent.append(&mut fx.consent);
    }

    pub fn stats(&self) -> Stats {
        let mut s = Stats::default();
        for p in &self.parts {
            s.merge(&p.stats);
        }
        s
    }
}
