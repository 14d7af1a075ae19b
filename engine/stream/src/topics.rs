//! Topic names (prefix from config), creation of the internal and output
//! topics, and the check that `idgraph.cmd` has the configured partition
//! count (it fixes P for the life of the deployment).

use crate::client::{self, Cluster};
use crate::error::StreamError;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
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

    /// Every topic with its partition count and the configs it is created
    /// with.
    pub fn specs(&self, partitions: u16) -> Vec<(&str, i32, TopicConfigs)> {
        let p = partitions as i32;
        vec![
            (&self.cmd, p, &[]),
            (&self.changelog, p, CHANGELOG),
            (&self.profiles, p, COMPACTED),
            (&self.lifecycle, p, &[]),
            (&self.consent, p, &[]),
            (&self.rejects, p, &[]),
        ]
    }
}

/// Topic configs set at creation.
pub type TopicConfigs = &'static [(&'static str, &'static str)];

const COMPACTED: TopicConfigs = &[("cleanup.policy", "compact")];

/// The changelog is compacted, but a record stays uncompacted for a day:
/// the records of a batch that did not apply (a crash between its records
/// and its marker) must meet no cleaner until the next owner's claim has
/// rewritten their keys' restored values (ADR 0004), which it does
/// within seconds of taking the partition. Earlier, the cleaner could
/// drop a committed value behind an unfinished one of the same key.
pub const CHANGELOG_MIN_COMPACTION_LAG_MS: &str = "86400000";

const CHANGELOG: TopicConfigs = &[("cleanup.policy", "compact"), ("min.compaction.lag.ms", CHANGELOG_MIN_COMPACTION_LAG_MS)];

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
pub fn create(cluster: &Cluster, specs: &[(&str, i32, TopicConfigs)], replication: i32) -> Result<(), StreamError> {
    let admin: AdminClient<DefaultClientContext> = client::admin(cluster).create().map_err(StreamError::kafka("admin client"))?;
    let new: Vec<NewTopic<'_>> = specs
        .iter()
        .map(|(name, parts, configs)| {
            configs.iter().fold(NewTopic::new(name, *parts, TopicReplication::Fixed(replication)), |t, (k, v)| t.set(k, v))
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

/// Shortest `min.compaction.lag.ms` of a compacted changelog that start-up
/// accepts without a warning.
const CHANGELOG_MIN_LAG_MS_WARN: u64 = 3_600_000;

/// Warns when the changelog is compacted with a short (or no)
/// `min.compaction.lag.ms`: a topic created before idgraph set it, or by
/// hand. A broker that does not describe topic configs is left alone.
pub fn check_changelog_configs(cluster: &Cluster, topic: &str) {
    let described = client::admin(cluster).create::<AdminClient<DefaultClientContext>>().ok().and_then(|admin| {
        let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(5)));
        let res = block_on(admin.describe_configs([&ResourceSpecifier::Topic(topic)], &opts)).ok()?;
        let cfg = res.into_iter().next()?.ok()?;
        let get = |k: &str| cfg.get(k).and_then(|e| e.value.clone());
        Some((get("cleanup.policy"), get("min.compaction.lag.ms")))
    });
    let Some((policy, lag)) = described else {
        tracing::debug!(topic, "the broker did not describe the changelog's configs");
        return;
    };
    if let Some(problem) = changelog_lag_problem(policy.as_deref(), lag.as_deref()) {
        tracing::warn!(
            topic,
            problem,
            recommended = CHANGELOG_MIN_COMPACTION_LAG_MS,
            "set min.compaction.lag.ms on the changelog (ADR 0004)"
        );
    }
}

/// What is wrong with a changelog's compaction settings, if anything.
fn changelog_lag_problem(policy: Option<&str>, lag: Option<&str>) -> Option<String> {
    if !policy.is_some_and(|p| p.split(',').any(|p| p.trim() == "compact")) {
        return None;
    }
    match lag.map(str::parse::<u64>) {
        Some(Ok(ms)) if ms >= CHANGELOG_MIN_LAG_MS_WARN => None,
        Some(Ok(ms)) => Some(format!(
            "min.compaction.lag.ms is {ms}: the cleaner may drop a committed state value behind the records of a batch cut short by a crash before the next owner rewrites them"
        )),
        _ => Some("min.compaction.lag.ms is not set".into()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_compacted_changelog_needs_a_compaction_lag() {
        assert_eq!(changelog_lag_problem(Some("delete"), None), None);
        assert_eq!(changelog_lag_problem(Some("compact"), Some(CHANGELOG_MIN_COMPACTION_LAG_MS)), None);
        assert_eq!(changelog_lag_problem(Some("compact,delete"), Some("3600000")), None);
        assert!(changelog_lag_problem(Some("compact"), Some("0")).is_some_and(|p| p.contains("is 0")));
        assert!(changelog_lag_problem(Some("compact"), None).is_some_and(|p| p.contains("not set")));
        assert!(CHANGELOG_MIN_COMPACTION_LAG_MS.parse::<u64>().is_ok_and(|ms| ms >= CHANGELOG_MIN_LAG_MS_WARN));
    }
}
