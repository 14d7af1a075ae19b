//! The start-up check that the brokers answer, with librdkafka's own
//! reasons when they do not.
//!
//! librdkafka reports a failed TLS handshake or a refused login through
//! its log and error callbacks, which rdkafka serves only when the
//! client's main queue is polled; the admin and metadata calls of the
//! start-up never poll it, so a wrong CA or password looked like a broker
//! that does not answer (a timeout after a minute, no reason). This check
//! polls: a TLS or authentication failure (by librdkafka's error code)
//! stops start-up at once with librdkafka's reason; other failures (a
//! broker still starting, a connection reset) are logged once each and
//! retried until `wait` runs out.

use crate::client::{self, Cluster};
use crate::error::StreamError;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What librdkafka reported while the check ran.
#[derive(Default)]
struct Reports {
    got: Mutex<Vec<Report>>,
}

struct Report {
    /// A failure no retry mends: TLS, authentication.
    fatal: bool,
    text: String,
}

impl Reports {
    fn push(&self, fatal: bool, text: String) {
        if let Ok(mut g) = self.got.lock() {
            g.push(Report { fatal, text });
        }
    }

    fn take(&self) -> Vec<Report> {
        self.got.lock().map(|mut g| std::mem::take(&mut *g)).unwrap_or_default()
    }
}

impl ClientContext for Reports {
    /// Warnings and errors are reasons to show, never fatal by themselves:
    /// their text does not tell a refused certificate from a connection
    /// reset during a handshake (a broker restarting). The error codes do.
    fn log(&self, level: RDKafkaLogLevel, _fac: &str, msg: &str) {
        if (level as i32) <= (RDKafkaLogLevel::Warning as i32) {
            self.push(false, msg.to_string());
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let code = error.rdkafka_error_code();
        let fatal =
            matches!(code, Some(RDKafkaErrorCode::SSL | RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed));
        self.push(fatal, reason.to_string());
    }
}

impl ConsumerContext for Reports {}

/// Waits until the brokers answer a metadata request, up to `wait`.
pub fn reach(cluster: &Cluster, wait: Duration) -> Result<(), StreamError> {
    let unreachable = |reason: String| StreamError::Unreachable { brokers: cluster.brokers.clone(), reason };
    let c: BaseConsumer<Reports> =
        client::admin(cluster).create_with_context(Reports::default()).map_err(StreamError::kafka("connection check client"))?;
    let deadline = Instant::now() + wait;
    let mut seen: Vec<String> = Vec::new();
    loop {
        let answer = c.fetch_metadata(None, Duration::from_millis(1500));
        // Serves the log and error callbacks queued meanwhile: a poll
        // serves one event, and says nothing of what it served (an info
        // line is served but not kept), so a fixed number of them.
        for _ in 0..64 {
            let _ = c.poll(Duration::ZERO);
        }
        let reports = c.context().take();
        if answer.is_ok() {
            return Ok(());
        }
        if let Some(r) = reports.iter().find(|r| r.fatal) {
            return Err(unreachable(r.text.clone()));
        }
        for r in reports {
            if !seen.contains(&r.text) {
                tracing::warn!(brokers = %cluster.brokers, reason = %r.text, "kafka brokers not reachable yet; retrying");
                seen.push(r.text);
            }
        }
        if Instant::now() >= deadline {
            let reason = match (seen.last(), answer) {
                (Some(last), _) => last.clone(),
                (None, Err(e)) => e.to_string(),
                (None, Ok(_)) => String::new(),
            };
            return Err(unreachable(format!("no answer within {} s; last: {reason}", wait.as_secs())));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_nobody_listens_on_fails_after_the_wait_with_librdkafkas_reason() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let cluster = Cluster::plain(format!("127.0.0.1:{port}"));
        let t = Instant::now();
        let e = reach(&cluster, Duration::from_secs(2)).unwrap_err().to_string();
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        assert!(e.contains(&format!("127.0.0.1:{port}")) && e.contains("no answer within 2 s"), "{e}");
        assert!(e.contains("Connection refused") || e.contains("brokers are down"), "{e}");
    }

    #[test]
    fn a_tls_client_against_a_plain_port_fails_at_once() {
        // Something that accepts and answers garbage to a TLS hello.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for c in listener.incoming() {
                let Ok(mut c) = c else { return };
                use std::io::{Read, Write};
                let mut buf = [0u8; 512];
                let _ = c.read(&mut buf);
                let _ = c.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
            }
        });
        let cluster = Cluster {
            brokers: format!("127.0.0.1:{port}"),
            properties: vec![("security.protocol".into(), "ssl".into()), ("ssl.ca.location".into(), "probe".into())],
        };
        let t = Instant::now();
        let e = reach(&cluster, Duration::from_secs(30)).unwrap_err().to_string();
        assert!(t.elapsed() < Duration::from_secs(10), "not at once: {:?}", t.elapsed());
        assert!(e.contains("SSL"), "{e}");
    }
}
