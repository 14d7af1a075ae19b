//! Topic names (prefix from config), creation of the internal and output
//! topics, and the check that `idgraph.cmd` has the configured partition
//! count (it fixes P for the life of the deployment).

use crate::client::{self, Cluster};
use crate::error::StreamError;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake};
use std::time::Duration;

/// The topics idgraph writes, by role.
#[derive(Debug, Clone)]
pub struct Topics {
    pub cmd: String,
    pub changelog: String,
    pub profiles: String,
    pub lifecycle: String,
    pub consent: String,
    pub rejects: String,
}

impl Topics {
    pub fn new(prefix: &str) -> Self {
        let t = |s: &str| format!("{prefix}.{s}");
        Self {
            cmd: t("cmd"),
            changelog: t("changelog"),
            profiles: t("profiles"),
            lifecycle: t("lifecycle"),
            consent: t("consent"),
            rejects: t("rejects"),
        }
    }

    /// The topic of a role.
    pub fn of(&self, dest: crate::outbox::Dest) -> &str {
        use crate::outbox::Dest;
        match dest {
            Dest::Cmd => &self.cmd,
            Dest::Changelog => &self.changelog,
            Dest::Profiles => &self.profiles,
            Dest::Lifecycle => &self.lifecycle,
            Dest::Consent => &self.consent,
            Dest::Rejects => &self.rejects,
        }
    }

    /// Every topic with its partition count and whether it is compacted.
    pub fn specs(&self, partitions: u16) -> Vec<(&str, i32, bool)> {
        let p = partitions as i32;
        vec![
            (&self.cmd, p, false),
            (&self.changelog, p, true),
            (&self.profiles, p, true),
            (&self.lifecycle, p, false),
            (&self.consent, p, false),
            (&self.rejects, p, false),
        ]
    }
}

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs a future on this thread (the admin client completes its futures
/// from its own thread; no async runtime is needed).
fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let waker = Arc::new(ThreadWaker(std::thread::current())).into();
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park_timeout(Duration::from_millis(50));
    }
}

/// Creates the topics that do not exist yet (existing ones are kept).
pub fn create(cluster: &Cluster, specs: &[(&str, i32, bool)], replication: i32) -> Result<(), StreamError> {
    let admin: AdminClient<DefaultClientContext> = client::admin(cluster).create().map_err(StreamError::kafka("admin client"))?;
    let new: Vec<NewTopic<'_>> = specs
        .iter()
        .map(|(name, parts, compact)| {
            let t = NewTopic::new(name, *parts, TopicReplication::Fixed(replication));
            if *compact {
                t.set("cleanup.policy", "compact")
            } else {
                t
            }
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results =
        block_on(admin.create_topics(new.iter(), &opts)).map_err(StreamError::kafka("create topics (is `kafka.brokers` reachable?)"))?;
    for r in results {
        if let Err((topic, code)) = r {
            if code != RDKafkaErrorCode::TopicAlreadyExists {
                return Err(StreamError::Topic { topic, problem: format!("cannot be created: {code}") });
            }
        }
    }
    Ok(())
}

/// The partition count of a topic, waiting up to `wait` for it to appear.
pub fn partition_count(cluster: &Cluster, topic: &str, wait: Duration) -> Result<Option<usize>, StreamError> {
    let c: BaseConsumer = client::admin(cluster).create().map_err(StreamError::kafka("metadata client"))?;
    let deadline = std::time::Instant::now() + wait;
    loop {
        let md = c.fetch_metadata(Some(topic), Duration::from_secs(5)).map_err(StreamError::kafka(format!("metadata of {topic}")))?;
        let n = md.topics().iter().find(|t| t.name() == topic && t.error().is_none()).map(|t| t.partitions().len()).filter(|n| *n > 0);
        if n.is_some() || std::time::Instant::now() >= deadline {
            return Ok(n);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Checks that `idgraph.cmd` and `idgraph.changelog` have exactly
/// `partitions` partitions and `idgraph.profiles` at least as many
/// (profiles go to the partition of their owner).
pub fn check(cluster: &Cluster, topics: &Topics, partitions: u16) -> Result<(), StreamError> {
    if let Some(n) = partition_count(cluster, &topics.profiles, Duration::from_secs(10))? {
        if n < partitions as usize {
            return Err(StreamError::Topic {
                topic: topics.profiles.clone(),
                problem: format!("has {n} partitions; it needs at least `state.partitions` ({partitions})"),
            });
        }
    }
    // `idgraph.cmd` numbers the graph's partitions, and a partition's state
    // changes go to the changelog partition of the same number.
    for (topic, required) in [(&topics.changelog, false), (&topics.cmd, true)] {
        match partition_count(cluster, topic, Duration::from_secs(10))? {
            Some(n) if n == partitions as usize => {}
            Some(n) => {
                let problem = format!(
                    "has {n} partitions but `state.partitions` is {partitions}; the partition count is fixed when the topics are created"
                );
                return Err(StreamError::Topic { topic: topic.clone(), problem });
            }
            None if required => {
                return Err(StreamError::Topic { topic: topic.clone(), problem: "does not exist and could not be created".into() })
            }
            None => {}
        }
    }
    Ok(())
}
