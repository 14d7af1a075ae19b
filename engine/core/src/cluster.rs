//! P partitions in one process over an in-memory bus.
//!
//! Delivery is deterministic: partitions are visited in order and each drains
//! its inbox; commands go to the inbox of the partition their key hashes to.
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
        let cmd = Command::Route(Box::new(ev));
        let p = cmd.partition(self.partitions()) as usize;
        self.inbox[p].push_back(cmd);
    }

    /// Delivers commands until none is left.
    pub fn run(&mut self, loader: &mut dyn Loader, out: &mut Effects) {
        let n = self.parts.len();
        let mut fx = Effects::default();
        loop {
            let mut idle = true;
            for p in 0..n {
                while let Some(cmd) = self.inbox[p].pop_front() {
                    idle = false;
                    self.delivered += 1;
                    self.parts[p].handle(cmd, loader, &mut fx);
                    for c in fx.cmds.drain(..) {
                        let d = c.partition(n as u16) as usize;
                        self.inbox[d].push_back(c);
                    }
                }
            }
            if idle {
                break;
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
