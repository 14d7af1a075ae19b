//! A stand-in for a Confluent-compatible schema registry, on a free
//! loopback port, for the tests of Avro outputs: it answers
//! `POST /subjects/<subject>/versions` (one ID per distinct schema text,
//! from 100 up) and `GET /schemas/ids/<id>`, 404 otherwise, and records
//! the subjects registered. (The engine crate's unit tests have their own
//! twin in `engine/stream/src/registry.rs`.)

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

#[derive(Debug, Default)]
struct State {
    /// Registered schema texts; the ID of the i-th is 100 + i.
    schemas: Vec<String>,
    /// (subject, ID, content type) of every registration.
    registered: Vec<(String, u32, String)>,
}

#[derive(Debug)]
pub struct Registry {
    pub url: String,
    state: Arc<Mutex<State>>,
}

impl Registry {
    pub fn start() -> Self {
        Self::start_with_auth(None)
    }

    /// A registry that answers 401 to any request without the HTTP basic
    /// credentials `user:password`.
    pub fn start_with_auth(credentials: Option<&str>) -> Self {
        let expected = credentials.map(|c| format!("Basic {}", idgraph_stream::registry::base64(c.as_bytes())));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let s = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut c) = conn else { return };
                let Some((method, path, ctype, body, auth)) = read_request(&mut c) else { continue };
                if expected.is_some() && auth != expected {
                    let _ = c.write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n");
                    continue;
                }
                let mut st = s.lock().unwrap();
                let subject = path.strip_prefix("/subjects/").and_then(|p| p.strip_suffix("/versions"));
                let answer = match (method.as_str(), subject) {
                    ("POST", Some(subject)) => serde_json::from_str::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|b| b["schema"].as_str().map(str::to_string))
                        .map(|schema| {
                            let i = st.schemas.iter().position(|x| *x == schema).unwrap_or_else(|| {
                                st.schemas.push(schema);
                                st.schemas.len() - 1
                            });
                            let id = 100 + i as u32;
                            st.registered.push((subject.to_string(), id, ctype));
                            format!("{{\"id\":{id}}}")
                        }),
                    ("GET", _) => path
                        .strip_prefix("/schemas/ids/")
                        .and_then(|i| i.parse::<usize>().ok())
                        .and_then(|id| st.schemas.get(id.checked_sub(100)?).cloned())
                        .map(|t| serde_json::json!({ "schema": t }).to_string()),
                    _ => None,
                };
                let _ = match answer {
                    Some(b) => write!(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}", b.len()),
                    None => c.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
                };
            }
        });
        Self { url, state }
    }

    /// (subject, ID, content type) of every registration, in order.
    pub fn registered(&self) -> Vec<(String, u32, String)> {
        self.state.lock().unwrap().registered.clone()
    }

    /// The schema registered with `id`.
    pub fn schema(&self, id: u32) -> Option<apache_avro::Schema> {
        let text = self.state.lock().unwrap().schemas.get(id.checked_sub(100)? as usize).cloned()?;
        Some(apache_avro::Schema::parse_str(&text).unwrap())
    }
}

/// (method, path, content type, body, authorization) of one request.
fn read_request(c: &mut TcpStream) -> Option<(String, String, String, String, Option<String>)> {
    let mut req = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = req.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = c.read(&mut buf).ok().filter(|n| *n > 0)?;
        req.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&req[..head_end]).to_string();
    let header = |name: &str| {
        head.lines().find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_string()))
    };
    let len: usize = header("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
    while req.len() < head_end + len {
        let n = c.read(&mut buf).ok().filter(|n| *n > 0)?;
        req.extend_from_slice(&buf[..n]);
    }
    let mut first = head.split_whitespace();
    let (method, path) = (first.next()?.to_string(), first.next()?.to_string());
    let body = String::from_utf8_lossy(&req[head_end..]).to_string();
    Some((method, path, header("content-type").unwrap_or_default(), body, header("authorization")))
}
