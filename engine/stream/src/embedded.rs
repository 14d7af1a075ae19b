//! The embedded broker for `idgraph run` without `kafka.brokers`:
//! librdkafka's mock cluster, in this process, on a loopback port any
//! Kafka client can use. It keeps at most 5 MiB or 100,000 message sets per
//! partition (older data is dropped silently) and has no compaction: for
//! first runs and demos, never for benchmarks or restores.

use crate::error::StreamError;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

pub struct Embedded {
    cluster: MockCluster<'static, DefaultProducerContext>,
}

impl std::fmt::Debug for Embedded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedded").field("bootstrap", &self.bootstrap()).finish()
    }
}

impl Embedded {
    /// Starts a one-broker cluster and creates `topics` (name, partitions).
    pub fn start(topics: &[(&str, i32)]) -> Result<Self, StreamError> {
        let cluster = MockCluster::new(1).map_err(StreamError::kafka("start the embedded broker"))?;
        for (name, parts) in topics {
            cluster.create_topic(name, *parts, 1).map_err(StreamError::kafka(format!("create topic {name} on the embedded broker")))?;
        }
        Ok(Self { cluster })
    }

    pub fn bootstrap(&self) -> String {
        self.cluster.bootstrap_servers()
    }
}
