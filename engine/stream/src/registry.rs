//! A Confluent-compatible schema registry over HTTP/1.1 or HTTPS: look up
//! a writer schema by ID (Avro inputs) and register a schema under a
//! subject (Avro outputs). Blocking and small: it runs at start-up and
//! when an input meets a schema ID for the first time.
//!
//! Credentials ride in the URL, as Confluent's clients take them
//! (`https://KEY:SECRET@host`, percent-encoded), and are sent as HTTP
//! basic auth; errors show the URL without them. HTTPS verifies the
//! registry's certificate against the system's trust store (OpenSSL's
//! `SSL_CERT_FILE` / `SSL_CERT_DIR` point it elsewhere).

use crate::error::StreamError;
use apache_avro::Schema;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// The content type the registry's API speaks.
pub const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

fn err(base: &str, what: impl std::fmt::Display, reason: impl std::fmt::Display) -> StreamError {
    StreamError::Registry { registry: redacted(base), what: what.to_string(), reason: reason.to_string() }
}

/// The URL without its credentials: `https://***@host/`. The credentials
/// end at the URL's last `@` (a secret may hold an unencoded `/`).
pub fn redacted(base: &str) -> String {
    match (base.split_once("://"), base.rfind('@')) {
        (Some((scheme, _)), Some(at)) if at > scheme.len() => format!("{scheme}://***{}", &base[at..]),
        // No scheme (an invalid URL): still nothing before the last `@`.
        (_, Some(at)) => format!("***{}", &base[at..]),
        _ => base.to_string(),
    }
}

/// A schema registry's base URL as configured. It may carry credentials
/// (`https://KEY:SECRET@host`), so its `Debug` shows it [`redacted`]; the
/// URL itself is read through `Deref`.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct RegistryUrl(String);

impl std::fmt::Debug for RegistryUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", redacted(&self.0))
    }
}

impl RegistryUrl {
    /// Whether its requests carry credentials over plain `http://`.
    pub fn credentials_in_clear(&self) -> bool {
        Target::parse(&self.0, "").is_ok_and(|t| !t.tls && t.auth.is_some())
    }

    /// Warns (once per call) when credentials would travel in clear.
    pub fn warn_if_in_clear(&self, used_for: &'static str) {
        if self.credentials_in_clear() {
            tracing::warn!(registry = %redacted(&self.0), used_for, "schema registry credentials go over plain http://; use https://");
        }
    }
}

impl std::ops::Deref for RegistryUrl {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<String> for RegistryUrl {
    fn from(url: String) -> Self {
        Self(url)
    }
}

impl From<&str> for RegistryUrl {
    fn from(url: &str) -> Self {
        Self(url.to_string())
    }
}

/// Where a request goes, parsed from the registry's base URL.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    tls: bool,
    /// `host[:port]` as written (the `Host` header).
    host: String,
    /// The full path of the request.
    path: String,
    /// `Authorization: Basic …` value, from the URL's `user:password@`.
    auth: Option<String>,
}

impl Target {
    fn parse(base: &str, rest: &str) -> Result<Self, String> {
        let (tls, url) = match base.split_once("://") {
            Some((s, u)) if s.eq_ignore_ascii_case("http") => (false, u),
            Some((s, u)) if s.eq_ignore_ascii_case("https") => (true, u),
            _ => return Err("the URL must start with http:// or https://".into()),
        };
        // Credentials end at the last `@`: a secret may hold `/`, `?`, `#`.
        let (auth, url) = match url.rsplit_once('@') {
            Some((userinfo, after)) => {
                let (user, pass) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                let creds = format!("{}:{}", percent_decode(user)?, percent_decode(pass)?);
                (Some(format!("Basic {}", base64(creds.as_bytes()))), after)
            }
            None => (None, url),
        };
        if url.contains(['?', '#']) {
            return Err("a registry URL takes no query or fragment".into());
        }
        let (host, prefix) = url.split_once('/').unwrap_or((url, ""));
        if host.is_empty() {
            return Err("the URL names no host".into());
        }
        let prefix = prefix.trim_end_matches('/');
        let path = if prefix.is_empty() { format!("/{rest}") } else { format!("/{prefix}/{rest}") };
        Ok(Self { tls, host: host.to_string(), path, auth })
    }

    /// `host:port`, the scheme's port when none is written.
    fn address(&self) -> String {
        let has_port = self.host.rsplit_once(':').is_some_and(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()) && !self.host.ends_with(']'));
        if has_port {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, if self.tls { 443 } else { 80 })
        }
    }

    /// The name the certificate must carry: the host without its port or
    /// IPv6 brackets.
    fn server_name(&self) -> String {
        let a = self.address();
        let host = a.rsplit_once(':').map_or(a.as_str(), |(h, _)| h);
        host.trim_start_matches('[').trim_end_matches(']').to_string()
    }
}

fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok());
            out.push(hex.ok_or("a `%` in the URL's credentials is not followed by two hex digits")?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the URL's credentials are not UTF-8 once decoded".into())
}

/// Standard base64 with padding (the basic-auth header's encoding).
pub fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for (k, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            out.push(if k <= c.len() { A[(n >> shift) as usize & 63] as char } else { '=' });
        }
    }
    out
}

/// Checks a registry URL as configured (scheme, host, credentials).
pub fn check_url(base: &str) -> Result<(), String> {
    Target::parse(base, "").map(drop)
}

/// Fetches a writer schema by ID; `None` when the registry does not know it.
pub fn fetch_schema(base: &str, id: u32) -> Result<Option<Schema>, StreamError> {
    let what = format!("schema ID {id}");
    let t = Target::parse(base, &format!("schemas/ids/{id}")).map_err(|e| err(base, &what, e))?;
    let (status, body) = http(&t, "GET", None).map_err(|e| err(base, &what, e))?;
    match status {
        200 => {
            let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| err(base, &what, format!("answer is not JSON: {e}")))?;
            let text = v.get("schema").and_then(|s| s.as_str()).ok_or_else(|| err(base, &what, "answer has no `schema`"))?;
            Schema::parse_str(text).map(Some).map_err(|e| err(base, &what, format!("does not parse: {e}")))
        }
        404 => Ok(None),
        401 | 403 => Err(err(base, &what, format!("answered HTTP {status}: check the credentials in the URL"))),
        s => Err(err(base, &what, format!("answered HTTP {s}"))),
    }
}

/// Registers `schema` (the text of an `.avsc`) under `subject`
/// (`POST /subjects/<subject>/versions`) and returns the ID the registry
/// gives it (the same ID when it already holds that schema).
pub fn register(base: &str, subject: &str, schema: &str) -> Result<u32, StreamError> {
    let what = format!("subject `{subject}`");
    let t = Target::parse(base, &format!("subjects/{subject}/versions")).map_err(|e| err(base, &what, e))?;
    let body = serde_json::json!({ "schema": schema }).to_string();
    let (status, answer) = http(&t, "POST", Some(body.as_bytes())).map_err(|e| err(base, &what, e))?;
    if status == 401 || status == 403 {
        return Err(err(base, &what, format!("registration answered HTTP {status}: check the credentials in the URL")));
    }
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

/// A minimal HTTP/1.1 request (the registry answers small JSON documents),
/// over TLS for `https://`; `body` is sent as [`CONTENT_TYPE`].
fn http(t: &Target, method: &str, body: Option<&[u8]>) -> std::io::Result<(u16, Vec<u8>)> {
    use std::net::ToSocketAddrs;
    let target = t.address();
    let addr = target
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, format!("{target} does not resolve")))?;
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut req =
        format!("{method} {} HTTP/1.1\r\nHost: {}\r\nAccept: {CONTENT_TYPE}, application/json\r\nConnection: close\r\n", t.path, t.host);
    if let Some(a) = &t.auth {
        req.push_str(&format!("Authorization: {a}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!("Content-Type: {CONTENT_TYPE}\r\nContent-Length: {}\r\n", b.len()));
    }
    req.push_str("\r\n");
    let mut req = req.into_bytes();
    req.extend_from_slice(body.unwrap_or_default());
    let raw = if t.tls {
        let tls_err = |e: &dyn std::fmt::Display| std::io::Error::other(format!("TLS: {e}"));
        let connector = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls_client()).map_err(|e| tls_err(&e))?.build();
        let mut s = connector.connect(&t.server_name(), s).map_err(|e| tls_err(&e))?;
        exchange(&mut s, &req)?
    } else {
        exchange(&mut { s }, &req)?
    };
    parse_answer(&raw)
}

fn exchange(s: &mut (impl Read + Write), req: &[u8]) -> std::io::Result<Vec<u8>> {
    s.write_all(req)?;
    let mut raw = Vec::new();
    match s.read_to_end(&mut raw) {
        Ok(_) => Ok(raw),
        // A TLS peer that closes without close_notify, once the answer is in.
        Err(_) if raw.windows(4).any(|w| w == b"\r\n\r\n") => Ok(raw),
        Err(e) => Err(e),
    }
}

fn parse_answer(raw: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
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
        /// The `Authorization` header of every request.
        pub auth: Vec<Option<String>>,
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
                    let (method, path, ctype, body, auth) = read_request(&mut c);
                    let mut seen = s2.lock().unwrap();
                    seen.requests.push((method.clone(), path.clone(), ctype, body.clone()));
                    seen.auth.push(auth);
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

    fn read_request(c: &mut std::net::TcpStream) -> (String, String, String, String, Option<String>) {
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
        let body = String::from_utf8_lossy(&req[head_end..]).to_string();
        (method, path, header("content-type").unwrap_or_default(), body, header("authorization"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::fake::FakeRegistry;
    use super::*;

    #[test]
    fn credentials_over_plain_http_are_told_apart() {
        assert!(RegistryUrl::from("http://k:s@r:8081").credentials_in_clear());
        assert!(!RegistryUrl::from("https://k:s@r").credentials_in_clear());
        assert!(!RegistryUrl::from("http://r:8081").credentials_in_clear());
        assert_eq!(format!("{:?}", RegistryUrl::from("http://k:s@r:8081")), "\"http://***@r:8081\"");
        assert_eq!(format!("{:?}", RegistryUrl::from("k:s@r:8081")), "\"***@r:8081\"");
    }

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
        let t = Target::parse("http://r:8081/reg/", "schemas/ids/3").unwrap();
        assert_eq!((t.tls, t.host.as_str(), t.path.as_str(), t.address()), (false, "r:8081", "/reg/schemas/ids/3", "r:8081".into()));
        let t = Target::parse("http://r", "subjects/s/versions").unwrap();
        assert_eq!((t.host.as_str(), t.path.as_str(), t.address(), t.auth), ("r", "/subjects/s/versions", "r:80".into(), None));
        assert!(Target::parse("ftp://r", "x").is_err());
        assert!(Target::parse("r:8081", "x").is_err());
    }

    #[test]
    fn https_and_credentials_come_from_the_url() {
        let t = Target::parse("https://KEY:p%40ss%3Aw0rd@psrc.example.cloud/", "schemas/ids/3").unwrap();
        assert!(t.tls);
        assert_eq!(
            (t.host.as_str(), t.address(), t.server_name()),
            ("psrc.example.cloud", "psrc.example.cloud:443".into(), "psrc.example.cloud".into())
        );
        // base64("KEY:p@ss:w0rd")
        assert_eq!(t.auth.as_deref(), Some("Basic S0VZOnBAc3M6dzByZA=="));
        let t = Target::parse("https://127.0.0.1:8443", "x").unwrap();
        assert_eq!((t.address(), t.server_name()), ("127.0.0.1:8443".into(), "127.0.0.1".into()));
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"a"), "YQ==");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"abc"), "YWJj");
        assert!(check_url("https://u:%zz@r").is_err());
        assert_eq!(redacted("https://KEY:SECRET@r:1/p"), "https://***@r:1/p");
        assert_eq!(redacted("https://KEY:S/E?C#R@T@r:1"), "https://***@r:1");
        assert_eq!(redacted("http://r:1/p"), "http://r:1/p");
        // Unencoded `/`, `?`, `#` and `@` in a secret; an upper-case scheme.
        let t = Target::parse("HTTPS://KEY:a/b?c#d@e@r:1/base", "x").unwrap();
        assert_eq!((t.tls, t.host.as_str(), t.path.as_str()), (true, "r:1", "/base/x"));
        assert_eq!(t.auth, Some(format!("Basic {}", base64(b"KEY:a/b?c#d@e"))));
        assert!(Target::parse("https://r:1/p?x=1", "x").is_err());
    }

    #[test]
    fn credentials_are_sent_as_basic_auth_and_never_shown_in_errors() {
        let r = FakeRegistry::start(&[]);
        let url = r.url.replace("http://", "http://svc:s3cr3t@");
        assert_eq!(register(&url, "t.profiles-value", SCHEMA).unwrap(), 100);
        assert_eq!(r.seen.lock().unwrap().auth[0].as_deref(), Some("Basic c3ZjOnMzY3IzdA=="));
        let e = register(&format!("{url}/elsewhere"), "t.consent-value", SCHEMA).unwrap_err().to_string();
        assert!(e.contains("***@") && !e.contains("s3cr3t"), "{e}");
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
