//! Errors of the streaming engine. `Display` names what failed, never an
//! identifier value, and does not print the source chain.

use rdkafka::error::KafkaError;

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The broker refused or failed an operation (external; often
    /// retryable). The client's error is printed here, not chained as a
    /// source: a chain printed it twice.
    #[error("kafka: {what}: {err}")]
    Kafka { what: String, err: KafkaError },
    /// The brokers did not answer at start-up (TLS, authentication, address).
    #[error(
        "kafka brokers `{brokers}` cannot be reached: {reason} (check `kafka.brokers` and the TLS and SASL settings in `kafka.client`)"
    )]
    Unreachable { brokers: String, reason: String },
    /// The topics do not match the configuration (user).
    #[error("topic `{topic}`: {problem}")]
    Topic { topic: String, problem: String },
    /// Local state could not be read or written (internal).
    #[error(transparent)]
    State(#[from] idgraph_state::StateError),
    #[error(transparent)]
    Store(#[from] idgraph_store::StoreError),
    /// Records the producer could not deliver after its retries (external).
    #[error("delivery failed for {failed} records: {first}")]
    Delivery { failed: u64, first: String },
    /// A schema registry failed or refused a request (external).
    #[error("schema registry {registry}: {what}: {reason}")]
    Registry { registry: String, what: String, reason: String },
    #[error("http listener {addr}: {reason}")]
    Http { addr: String, reason: String },
    #[error("internal: {0}")]
    Internal(String),
}

impl StreamError {
    pub fn kafka(what: impl Into<String>) -> impl FnOnce(KafkaError) -> StreamError {
        let what = what.into();
        move |err| StreamError::Kafka { what, err }
    }

    /// Whether retrying the operation later can succeed.
    pub fn retryable(&self) -> bool {
        matches!(self, StreamError::Kafka { .. } | StreamError::Delivery { .. })
    }
}
