//! The core's consumer group (`<group-id>-core` on `idgraph.cmd`,
//! cooperative-sticky): what each rebalance changed, recorded inside the
//! consumer's poll for the worker to act on right after it (ADR 0004).
//!
//! Newly assigned partitions are paused inside the rebalance so nothing is
//! fetched for them before they are restored and sought to their own
//! position. A revocation waits inside the callback for the delivery in
//! flight (ADR 0009: a batch's records are produced while the next is
//! polled), so a revoked partition's changelog is complete when the
//! rebalance goes on; the worker then drops what it buffered for it.

use crate::tail::InFlight;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::ClientContext;
use std::sync::{Arc, Mutex};

/// One change of the assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Assigned(Vec<u16>),
    /// `lost`: taken without a revoke (the session expired).
    Revoked {
        partitions: Vec<u16>,
        lost: bool,
    },
}

#[derive(Debug)]
pub struct CoreContext {
    changes: Mutex<Vec<Change>>,
    in_flight: Arc<InFlight>,
}

impl CoreContext {
    pub fn new(in_flight: Arc<InFlight>) -> Self {
        Self { changes: Mutex::new(Vec::new()), in_flight }
    }

    /// The changes since the last call, in order.
    pub fn take(&self) -> Vec<Change> {
        self.changes.lock().map(|mut c| std::mem::take(&mut *c)).unwrap_or_default()
    }

    fn push(&self, c: Change) {
        if let Ok(mut v) = self.changes.lock() {
            v.push(c);
        }
    }
}

fn partitions(tpl: &rdkafka::TopicPartitionList) -> Vec<u16> {
    tpl.elements().iter().filter_map(|e| u16::try_from(e.partition()).ok()).collect()
}

impl ClientContext for CoreContext {}

impl ConsumerContext for CoreContext {
    fn pre_rebalance(&self, c: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = r {
            self.in_flight.wait_idle();
            self.push(Change::Revoked { partitions: partitions(tpl), lost: c.assignment_lost() });
        }
    }

    fn post_rebalance(&self, c: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        match r {
            Rebalance::Assign(tpl) => {
                if let Err(e) = c.pause(tpl) {
                    tracing::warn!(error = %e, "cannot pause newly assigned partitions");
                }
                self.push(Change::Assigned(partitions(tpl)));
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
            Rebalance::Revoke(_) => {}
        }
    }
}
