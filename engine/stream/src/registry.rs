//! A Confluent-compatible schema registry over plain HTTP/1.1: look up a
//! writer schema by ID (Avro inputs) and register a schema under a
//! subject (Avro outputs). Blocking and small: it runs at start-up and
//! when an input meets a schema ID for the first time.

use crate::error::StreamError;
use apache_avro::Schema;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// The content type the registry's API speaks.
pub const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

fn err(base: &str, what: impl std::fmt::Display, reason: impl std::fmt::Display) -> StreamError {
    StreamError::Registry { registry: base.to_string(), what: what.to_string(), reason: reason.to_string() }
}

/// `host[:port]` and the full path of `rest` under the registry's base URL.
fn target(base: &str, rest: &str) -> Result<(String, String), String> {
    let url = base.strip_prefix("http://").ok_or("only http:// URLs are supported")?;
    let (host, prefix) = url.split_once('/').unwrap_or((url, ""));
    let prefix = prefix.trim_end_matches('/');
    let path = if prefix.is_empty() { format!("/{rest}") } else { format!("/{prefix}/{rest}") };
    Ok((host.to_string(), path))
}

/// Fetches a writer schema by ID; `None` when the registry does not know it.
pub fn fetch_schema(base: &str, id: u32) -> Result<Option<Schema>, StreamError> {
    let what = format!("schema ID {id}");
    let (host, path) = target(base, &format!("schemas/ids/{id}")).map_err(|e| err(base, &what, e))?;
    let (status, body) = http(&host, "GET", &path, None).map_err(|e| err(base, &what, e))?;
    match status {
        200 => {
            let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| err(base, &what, format!("answer is not JSON: {e}")))?;
            let text = v.get("schema").and_then(|s| s.as_str()).ok_or_else(|| err(base, &what, "answer has no `schema`"))?;
            Schema::parse_str(text).map(Some).map_err(|e| err(base, &what, format!("does not parse: {e}")))
        }
        404 => Ok(None),
        s => Err(err(base, &what, format!("answered HTTP {s}"))),
    }
}

/// Registers `schema` (the text of an `.avsc`) under `subject`
/// (`POST /subjects/<subject>/versions`) and returns the ID the registry
/// gives it (the same ID when it already holds that schema).
pub fn register(base: &str, subject: &str, schema: &str) -> Result<u32, StreamError> {
    let what = format!("subject `{subject}`");
    let (host, path) = target(base, &format!("subjects/{subject}/versions")).map_err(|e| err(base, &what, e))?;
    let body = serde_json::json!({ "schema": schema }).to_string();
    let (status, answer) = http(&host, "POST", &path, Some(body.as_bytes())).map_err(|e| err(base, &what, e))?;
    if status != 200 {
        let text = String::from_utf8_lossy(&answer);
        let text: String = text.chars().take(200).collect();
        return Err(err(base, &what, format!("registration answered HTTP {status}: {}", text.trim())));
    }
    let v: serde_json::Value = serde_json::from_slice(&answer).map_err(|e| err(base, &what, format!("answer is not JSON: {e}")))?;
    v.get("id")
        .and_then(serde_json::Value::as_u64)
        .and_then(|id| u32::try_from(id).ok())
        .ok_or_else(|| err(base, &what, format!("answer has no schema `id`: {v}")))
}

/// A minimal HTTP/1.1 request (the registry answers small JSON documents);
/// `body` is sent as [`CONTENT_TYPE`].
fn http(host: &str, method: &str, path: &str, body: Option<&[u8]>) -> std::io::Result<(u16, Vec<u8>)> {
    use std::net::ToSocketAddrs;
    let target = if host.contains(':') { host.to_string() } else { format!("{host}:80") };
    let addr = target
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, format!("{target} does not resolve")))?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nAccept: {CONTENT_TYPE}, application/json\r\nConnection: close\r\n");
    if let Some(b) = body {
        req.push_str(&format!("Content-Type: {CONTENT_TYPE}\r\nContent-Length: {}\r\n", b.len()));
    }
    req.push_str("\r\n");
    let mut req = req.into_bytes();
    req.extend_from_slice(body.unwrap_or_default());
    s.write_all(&req)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed HTTP answer");
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(bad)?;
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or_else(bad)?;
    let mut body = raw[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let eol = rest.windows(2).position(|w| w == b"\r\n").ok_or_else(bad)?;
            let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..eol]).trim(), 16).map_err(|_| bad())?;
            rest = &rest[eol + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(rest.get(..size).ok_or_else(bad)?);
            rest = rest.get(size + 2..).ok_or_else(bad)?;
        }
        body = out;
    }
    Ok((status, body))
}

/// A registry for unit tests: answers registrations (IDs from 100 up, one
/// per distinct schema text), lookups by ID (chunked, as some registries
/// do) and 404 otherwise, until dropped; it records every request.
#[cfg(test)]
pub(crate) mod fake {
    #![allow(clippy::unwrap_used)]
    use std::io::{Read, Write};
    use std::sync::{Arc, Mutex};

    #[derive(Debug, Default)]
    pub struct Seen {
        /// (method, path, content type, body) of every request.
        pub requests: Vec<(String, String, String, String)>,
        /// Registered schema texts; the ID of the i-th is 100 + i.
        pub schemas: Vec<String>,
    }

    #[derive(Debug)]
    pub struct FakeRegistry {
        pub url: String,
        pub seen: Arc<Mutex<Seen>>,
    }

    impl FakeRegistry {
        /// `preset`: schemas known by ID before any registration.
        pub fn start(preset: &[(u32, &str)]) -> Self {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            let seen = Arc::new(Mutex::new(Seen::default()));
            let preset: Vec<(u32, String)> = preset.iter().map(|(i, s)| (*i, s.to_string())).collect();
            let s2 = seen.clone();
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    let Ok(mut c) = conn else { return };
                    let (method, path, ctype, body) = read_request(&mut c);
                    let mut seen = s2.lock().unwrap();
                    seen.requests.push((method.clone(), path.clone(), ctype, body.clone()));
                    let answer = if method == "POST" && path.starts_with("/subjects/") && path.ends_with("/versions") {
                        let schema = serde_json::from_str::<serde_json::Value>(&body).unwrap()["schema"].as_str().unwrap().to_string();
                        let i = seen.schemas.iter().position(|s| *s == schema).unwrap_or_else(|| {
                            seen.schemas.push(schema);
                            seen.schemas.len() - 1
                        });
                        Some(format!("{{\"id\":{}}}", 100 + i))
                    } else if let Some(id) = path.strip_prefix("/schemas/ids/").and_then(|i| i.parse::<u32>().ok()) {
                        let text = preset
                            .iter()
                            .find(|(i, _)| *i == id)
                            .map(|(_, s)| s.clone())
                            .or_else(|| id.checked_sub(100).and_then(|i| seen.schemas.get(i as usize).cloned()));
                        text.map(|t| serde_json::json!({ "schema": t }).to_string())
                    } else {
                        None
                    };
                    let _ = match answer {
                        Some(b) => write!(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{b}\r\n0\r\n\r\n", b.len()),
                        None => c.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
                    };
                }
            });
            Self { url, seen }
        }
    }

    fn read_request(c: &mut std::net::TcpStream) -> (String, String, String, String) {
        let mut req = Vec::new();
        let mut buf = [0u8; 4096];
        let head_end = loop {
            if let Some(p) = req.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            let n = c.read(&mut buf).unwrap();
            assert!(n > 0, "request cut short");
            req.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8_lossy(&req[..head_end]).to_string();
        let header = |name: &str| {
            head.lines().find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_string()))
        };
        let len: usize = header("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
        while req.len() < head_end + len {
            let n = c.read(&mut buf).unwrap();
            assert!(n > 0, "body cut short");
            req.extend_from_slice(&buf[..n]);
        }
        let mut first = head.split_whitespace();
        let (method, path) = (first.next().unwrap().to_string(), first.next().unwrap().to_string());
        (method, path, header("content-type").unwrap_or_default(), String::from_utf8_lossy(&req[head_end..]).to_string())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::fake::FakeRegistry;
    use super::*;

    const SCHEMA: &str = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"}]}"#;

    #[test]
    fn registers_under_a_subject_and_gets_the_same_id_again() {
        let r = FakeRegistry::start(&[]);
        assert_eq!(register(&r.url, "t.profiles-value", SCHEMA).unwrap(), 100);
        assert_eq!(register(&r.url, "t.lifecycle-value", "\"bytes\"").unwrap(), 101);
        assert_eq!(register(&r.url, "t.profiles-value", SCHEMA).unwrap(), 100);
        let seen = r.seen.lock().unwrap();
        let (method, path, ctype, body) = &seen.requests[0];
        assert_eq!((method.as_str(), path.as_str(), ctype.as_str()), ("POST", "/subjects/t.profiles-value/versions", CONTENT_TYPE));
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body, serde_json::json!({ "schema": SCHEMA }), "the schema text, escaped as a JSON string");
    }

    #[test]
    fn a_base_path_is_kept() {
        assert_eq!(target("http://r:8081/reg/", "schemas/ids/3").unwrap(), ("r:8081".into(), "/reg/schemas/ids/3".into()));
        assert_eq!(target("http://r", "subjects/s/versions").unwrap(), ("r".into(), "/subjects/s/versions".into()));
        assert!(target("https://r", "x").is_err());
    }

    #[test]
    fn a_failed_registration_names_the_registry_and_the_subject() {
        // Nothing listens on a port just released.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("http://127.0.0.1:{port}");
        let e = register(&url, "t.consent-value", SCHEMA).unwrap_err().to_string();
        assert!(e.contains(&url) && e.contains("t.consent-value"), "{e}");
        // A registry that refuses: the lookup path answers 404 to a POST.
        let r = FakeRegistry::start(&[]);
        let e = register(&format!("{}/elsewhere", r.url), "t.consent-value", SCHEMA).unwrap_err().to_string();
        assert!(e.contains("t.consent-value") && e.contains("HTTP 404"), "{e}");
    }

    #[test]
    fn looks_up_schemas_by_id() {
        let r = FakeRegistry::start(&[(9, SCHEMA)]);
        assert!(fetch_schema(&r.url, 9).unwrap().is_some());
        assert!(fetch_schema(&r.url, 10).unwrap().is_none());
    }
}
