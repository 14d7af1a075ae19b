//! Every rdkafka client is configured here (`ClientConfig::new` is banned
//! elsewhere by clippy's `disallowed-methods`).
//!
//! A [`Cluster`] is where the clients connect and the operator's own
//! librdkafka properties (`kafka.client`: TLS, SASL, tuning). Those are
//! applied last, over the engine's tuning; the properties the engine's
//! guarantees rest on are [`RESERVED`] and refused by [`check_property`].

use crate::config::Compression;
use rdkafka::client::{Client, ClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::BaseProducer;
use std::fmt;
use std::time::Duration;

/// Where the clients connect, and with which extra properties.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Cluster {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// The operator's librdkafka properties, in the order given.
    pub properties: Vec<(String, String)>,
}

impl Cluster {
    /// Brokers without extra properties (plaintext, no authentication).
    pub fn plain(brokers: impl Into<String>) -> Self {
        Self { brokers: brokers.into(), properties: Vec::new() }
    }
}

/// Secret values never reach a log line or an error message.
impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let props: Vec<(&str, &str)> =
            self.properties.iter().map(|(k, v)| (k.as_str(), if is_secret(k) { "[redacted]" } else { v.as_str() })).collect();
        f.debug_struct("Cluster").field("brokers", &self.brokers).field("properties", &props).finish()
    }
}

/// Properties whose values may be credentials: never printed.
pub fn is_secret(key: &str) -> bool {
    ["password", "secret", "passphrase", "key.pem", "jaas", "sasl.oauthbearer.config", "ssl_key"].iter().any(|s| key.contains(s))
}

/// Properties the engine sets itself, with what to use instead (or why
/// they are not the operator's to change).
pub const RESERVED: &[(&str, &str)] = &[
    ("bootstrap.servers", "set `kafka.brokers` instead"),
    ("metadata.broker.list", "set `kafka.brokers` instead"),
    ("group.id", "set `kafka.group-id` instead"),
    ("compression.type", "set `kafka.compression` instead"),
    ("compression.codec", "set `kafka.compression` instead"),
    ("auto.offset.reset", "set `kafka.input-start` instead"),
    ("enable.idempotence", "the engine's producers are idempotent: effectively-once rests on it"),
    ("acks", "the engine waits for every in-sync replica (`all`): effectively-once rests on it"),
    ("request.required.acks", "the engine waits for every in-sync replica (`all`): effectively-once rests on it"),
    ("enable.gapless.guarantee", "the engine orders and checks its deliveries itself"),
    ("max.in.flight.requests.per.connection", "bounded by the idempotent producer"),
    ("max.in.flight", "bounded by the idempotent producer"),
    ("transactional.id", "the engine does not use Kafka transactions (docs/adr/0003)"),
    ("enable.auto.commit", "the engine commits what it has made durable, itself"),
    ("auto.commit.enable", "the engine commits what it has made durable, itself"),
    ("enable.auto.offset.store", "the engine commits what it has made durable, itself"),
    ("partition.assignment.strategy", "partitions move by cooperative-sticky assignment (docs/adr/0004)"),
    ("group.protocol", "partitions move by cooperative-sticky assignment (docs/adr/0004)"),
    ("group.instance.id", "static membership is not supported: a restarted member must rejoin"),
    ("enable.partition.eof", "the engine's consumers rely on its default"),
    ("log_level", "set the environment variable IDGRAPH_LOG instead"),
    ("partitioner", "outputs go to their profile's partition, in order per profile"),
];

/// Checks one operator property: not reserved, and a name and value
/// librdkafka accepts. The error never shows a secret's value.
pub fn check_property(key: &str, value: &str) -> Result<(), String> {
    if let Some((_, why)) = RESERVED.iter().find(|(k, _)| *k == key) {
        return Err(format!("set by idgraph: {why}"));
    }
    if key.ends_with("_cb") || key == "opaque" || key == "default_topic_conf" {
        return Err("a callback or pointer, not a property that can be set from the configuration".into());
    }
    let mut c = bare();
    c.set(key, value);
    match c.create_native_config() {
        Ok(_) => {}
        Err(KafkaError::ClientConfig(_, desc, _, _)) => return Err(without_secret(key, value, desc)),
        Err(e) => return Err(e.to_string()),
    }
    if key.ends_with(".location") && value != "probe" {
        if value.is_empty() {
            return Err("is empty: give a file path (or `probe` for ssl.ca.location)".into());
        }
        if !std::path::Path::new(value).exists() {
            return Err(format!("`{value}` does not exist"));
        }
    }
    Ok(())
}

/// librdkafka's message about a property, with a secret's value taken
/// out (it quotes values it refuses).
fn without_secret(key: &str, value: &str, desc: String) -> String {
    if !is_secret(key) || value.is_empty() {
        return desc;
    }
    let scrubbed = desc.replace(&format!("\"{value}\""), "\"***\"");
    if value.len() >= 4 && scrubbed.contains(value) {
        return "librdkafka refused this value (not shown: it may be a secret)".into();
    }
    scrubbed
}

/// Checks the operator's properties together, as a client is made from
/// them: TLS files are loaded and the SASL mechanism must be built in.
/// Connects nowhere (no brokers are given).
pub fn check_properties(properties: &[(String, String)]) -> Result<(), String> {
    let mut c = bare();
    for (k, v) in properties {
        c.set(k, v);
    }
    c.set("log_level", "0");
    c.create::<BaseProducer>().map(drop).map_err(|e| match e {
        KafkaError::ClientCreation(msg) => msg,
        other => other.to_string(),
    })
}

fn bare() -> ClientConfig {
    #[allow(clippy::disallowed_methods)]
    ClientConfig::new()
}

fn base(cluster: &Cluster) -> ClientConfig {
    let mut c = bare();
    c.set("bootstrap.servers", &cluster.brokers).set("client.id", "idgraph").set("socket.nagle.disable", "true");
    c
}

/// The operator's properties go last: they may retune the engine's
/// defaults (the reserved ones were refused at start-up). A caller that
/// tunes a config further applies them again after its own settings.
pub fn with_operator(mut c: ClientConfig, cluster: &Cluster) -> ClientConfig {
    for (k, v) in &cluster.properties {
        c.set(k, v);
    }
    c
}

/// Idempotent, ordered, no linger: the outbox and ingest producers. Both
/// enqueue a whole batch and then wait for its acknowledgements, so a
/// linger only delayed the last request of every batch (2 ms measured on
/// each of the core's two deliveries per batch).
pub fn producer(cluster: &Cluster, compression: Compression) -> ClientConfig {
    let mut c = base(cluster);
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", compression.as_codec())
        .set("linger.ms", "0")
        .set("batch.size", "1000000")
        .set("message.max.bytes", "10000000")
        .set("queue.buffering.max.messages", "200000")
        .set("queue.buffering.max.kbytes", "262144");
    with_operator(c, cluster)
}

/// A consumer that never commits by itself; the caller commits what it has
/// made durable.
pub fn consumer(cluster: &Cluster, group: &str) -> ClientConfig {
    let mut c = base(cluster);
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
    with_operator(c, cluster)
}

/// The core consumer's fetch wait on the broker (ms).
const FETCH_WAIT_MS: u32 = 2;

/// The core consumer's config: the engine's consumer, tuned for hops
/// between partitions, then the operator's properties (which go last).
pub fn core_consumer(cluster: &Cluster, group_id: &str) -> ClientConfig {
    let mut conf = consumer(cluster, &format!("{group_id}-core"));
    conf
        // Members learn of a rebalance within 100 ms: a broker that
        // completes a rebalance without waiting for every member (tansu
        // 0.6) then rarely hands a partition to a second member before
        // its owner rejoined (ADR 0004).
        .set("heartbeat.interval.ms", "100")
        // A command produced by one batch is the next batch's input:
        // each hop of the merge protocol waits for this fetch. A broker
        // that answers a fetch only when its wait ends (tansu 0.6)
        // would hold every hop for the whole wait.
        .set("fetch.wait.max.ms", FETCH_WAIT_MS.to_string());
    with_operator(conf, cluster)
}

/// How long [`warm_up`] waits for each metadata answer.
const WARM_UP: Duration = Duration::from_millis(500);

/// Has a new idempotent producer ask for its producer ID now.
///
/// An idempotent producer sends nothing before the broker gave it a
/// producer ID. librdkafka asks for one when a metadata answer comes in,
/// else every 500 ms. The first answer comes over the bootstrap
/// connection, which librdkafka drops for the broker it names, so that ask
/// finds no broker up; the first records then waited up to a second for
/// the timer. A second metadata request goes over the named broker's
/// connection, and its answer asks at once. A failure here only slows the
/// start: the producer's own retries remain.
pub fn warm_up<C: ClientContext>(client: &Client<C>, topic: &str) {
    for _ in 0..2 {
        if let Err(e) = client.fetch_metadata(Some(topic), WARM_UP) {
            tracing::debug!(error = %e, "producer warm-up: no metadata; the producer ID comes with the first records");
            break;
        }
    }
}

/// A plain client for metadata and administration.
pub fn admin(cluster: &Cluster) -> ClientConfig {
    with_operator(base(cluster), cluster)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producers_compress_as_configured() {
        for (c, codec) in
            [(Compression::None, "none"), (Compression::Gzip, "gzip"), (Compression::Snappy, "snappy"), (Compression::Lz4, "lz4")]
        {
            assert_eq!(producer(&Cluster::plain("127.0.0.1:9"), c).get("compression.type"), Some(codec));
        }
    }

    fn cluster(props: &[(&str, &str)]) -> Cluster {
        Cluster { brokers: "b:9092".into(), properties: props.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() }
    }

    #[test]
    fn the_core_consumer_takes_the_operators_tuning_last() {
        let plain = core_consumer(&Cluster::plain("b:1"), "g");
        assert_eq!(plain.get("fetch.wait.max.ms"), Some(FETCH_WAIT_MS.to_string().as_str()));
        assert_eq!(plain.get("group.id"), Some("g-core"));
        let tuned = Cluster { brokers: "b:1".into(), properties: vec![("fetch.wait.max.ms".into(), "50".into())] };
        assert_eq!(core_consumer(&tuned, "g").get("fetch.wait.max.ms"), Some("50"));
    }

    #[test]
    fn operator_properties_reach_every_client_and_retune_defaults() {
        let c = cluster(&[("security.protocol", "sasl_ssl"), ("sasl.mechanisms", "PLAIN"), ("fetch.wait.max.ms", "50")]);
        for conf in [producer(&c, Compression::Lz4), consumer(&c, "g"), admin(&c)] {
            assert_eq!(conf.get("security.protocol"), Some("sasl_ssl"));
            assert_eq!(conf.get("sasl.mechanisms"), Some("PLAIN"));
            assert_eq!(conf.get("bootstrap.servers"), Some("b:9092"));
        }
        assert_eq!(consumer(&c, "g").get("fetch.wait.max.ms"), Some("50"));
        assert_eq!(consumer(&c, "g").get("group.id"), Some("g"));
        assert_eq!(producer(&c, Compression::Lz4).get("enable.idempotence"), Some("true"));
    }

    #[test]
    fn reserved_unknown_and_invalid_properties_are_refused_with_a_reason() {
        let e = check_property("enable.idempotence", "false").unwrap_err();
        assert!(e.contains("effectively-once"), "{e}");
        let e = check_property("bootstrap.servers", "x:1").unwrap_err();
        assert!(e.contains("kafka.brokers"), "{e}");
        let e = check_property("no.such.property", "1").unwrap_err();
        assert!(e.contains("No such configuration property"), "{e}");
        let e = check_property("security.protocol", "carrier_pigeon").unwrap_err();
        assert!(e.contains("carrier_pigeon"), "{e}");
        let e = check_property("ssl.ca.location", "/nonexistent/ca.pem").unwrap_err();
        assert!(e.contains("does not exist"), "{e}");
        let e = check_property("dr_msg_cb", "x").unwrap_err();
        assert!(e.contains("callback"), "{e}");
        // TLS and SASL are built in.
        for (k, v) in [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanisms", "SCRAM-SHA-512"),
            ("sasl.username", "u"),
            ("sasl.password", "p"),
            ("ssl.ca.location", "probe"),
            ("enable.ssl.certificate.verification", "false"),
            ("client.id", "crm-idgraph"),
        ] {
            check_property(k, v).unwrap_or_else(|e| panic!("{k}: {e}"));
        }
        check_properties(&[
            ("security.protocol".into(), "sasl_ssl".into()),
            ("sasl.mechanisms".into(), "SCRAM-SHA-256".into()),
            ("sasl.username".into(), "u".into()),
            ("sasl.password".into(), "p".into()),
        ])
        .unwrap();
    }

    #[test]
    fn a_secret_never_shows_in_an_error_or_a_debug_line() {
        // A name librdkafka does not know is named, even where a value
        // would be a secret; a refused secret value is not shown.
        let e = check_property("ssl.truststore.password", "hunter2").unwrap_err();
        assert!(e.contains("No such configuration property") && !e.contains("hunter2"), "{e}");
        assert_eq!(without_secret("sasl.password", "hunter2", "Invalid value \"hunter2\" for x".into()), "Invalid value \"***\" for x");
        assert!(!without_secret("sasl.password", "hunter2", "bad: hunter2".into()).contains("hunter2"));
        for k in ["sasl.password", "ssl.key.password", "ssl.keystore.password", "ssl.key.pem", "sasl.oauthbearer.client.secret"] {
            assert!(is_secret(k), "{k}");
        }
        assert!(!is_secret("sasl.username") && !is_secret("ssl.ca.location"));
        let c = cluster(&[("sasl.username", "svc"), ("sasl.password", "hunter2"), ("sasl.oauthbearer.client.secret", "s3cr3t")]);
        let d = format!("{c:?}");
        assert!(d.contains("svc") && !d.contains("hunter2") && !d.contains("s3cr3t"), "{d}");
    }

    #[test]
    fn a_combination_librdkafka_cannot_build_is_refused_before_any_connection() {
        // Kerberos needs libsasl2, which is not built in.
        let e = check_properties(&[("security.protocol".into(), "sasl_plaintext".into()), ("sasl.mechanisms".into(), "GSSAPI".into())])
            .unwrap_err();
        assert!(e.contains("GSSAPI"), "{e}");
    }
}
