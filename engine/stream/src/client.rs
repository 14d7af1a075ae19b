//! Every rdkafka client is configured here (`ClientConfig::new` is banned
//! elsewhere by clippy's `disallowed-methods`).

use crate::config::Compression;
use rdkafka::config::ClientConfig;

fn base(brokers: &str) -> ClientConfig {
    #[allow(clippy::disallowed_methods)]
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers).set("client.id", "idgraph").set("socket.nagle.disable", "true");
    c
}

/// Idempotent, ordered, no linger: the outbox and ingest producers. Both
/// enqueue a whole batch and then wait for its acknowledgements, so a
/// linger only delayed the last request of every batch (2 ms measured on
/// each of the core's two deliveries per batch).
pub fn producer(brokers: &str, compression: Compression) -> ClientConfig {
    let mut c = base(brokers);
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", compression.as_codec())
        .set("linger.ms", "0")
        .set("batch.size", "1000000")
        .set("message.max.bytes", "10000000")
        .set("queue.buffering.max.messages", "200000")
        .set("queue.buffering.max.kbytes", "262144");
    c
}

/// A consumer that never commits by itself; the caller commits what it has
/// made durable.
pub fn consumer(brokers: &str, group: &str) -> ClientConfig {
    let mut c = base(brokers);
    c.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("fetch.wait.max.ms", "10")
        .set("fetch.max.bytes", "52428800")
        .set("queued.max.messages.kbytes", "65536")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000");
    c
}

/// A plain client for metadata and administration.
pub fn admin(brokers: &str) -> ClientConfig {
    base(brokers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producers_compress_as_configured() {
        for (c, codec) in
            [(Compression::None, "none"), (Compression::Gzip, "gzip"), (Compression::Snappy, "snappy"), (Compression::Lz4, "lz4")]
        {
            assert_eq!(producer("127.0.0.1:9", c).get("compression.type"), Some(codec));
        }
    }
}
