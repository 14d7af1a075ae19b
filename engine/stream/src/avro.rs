//! Avro inputs in the Confluent wire format (magic byte 0, a big-endian
//! `u32` schema ID, then the Avro binary datum), and a strict check of JSON
//! records against the Avro schemas in `schemas/`.
//!
//! Writer schemas come from local `.avsc` files declared per ID, or from a
//! schema registry (`GET <url>/schemas/ids/<id>`, cached). A decoded record
//! becomes JSON and goes through the input's JSON parser (canonical or
//! Segment shape, field mapping by config). Trait values of the canonical
//! twin (`io.idgraph.Touchpoint`) are JSON texts and are parsed back.

use crate::error::StreamError;
use apache_avro::Schema;
use rustc_hash::FxHashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

/// The Confluent wire format's first byte.
pub const MAGIC: u8 = 0;
/// The canonical touchpoint's Avro twin.
const CANONICAL_NAME: &str = "io.idgraph.Touchpoint";
/// Records whose `traits` map holds JSON texts in Avro (JSON values in JSON).
const TRAIT_TEXT_RECORDS: [&str; 2] = [CANONICAL_NAME, "io.idgraph.Profile"];

/// Where an Avro input finds its writer schemas.
#[derive(Debug, Clone, Default)]
pub struct AvroSpec {
    /// Local writer schemas by ID.
    pub schemas: Vec<(u32, PathBuf)>,
    /// A schema registry base URL (`http://host:port[/path]`).
    pub registry: Option<String>,
}

/// Why an Avro record was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AvroReject {
    #[error("not in the Avro wire format (magic byte 0 and a 4-byte schema ID)")]
    NotAvro,
    #[error("schema ID {0} is not known (neither a local schema nor in the registry)")]
    UnknownSchemaId(u32),
    #[error("does not decode with schema ID {id}: {reason}")]
    Decode { id: u32, reason: String },
}

impl AvroReject {
    /// The reason code (rejects header and metric label).
    pub fn code(&self) -> &'static str {
        match self {
            AvroReject::NotAvro => "not_avro",
            AvroReject::UnknownSchemaId(_) => "unknown_schema_id",
            AvroReject::Decode { .. } => "avro_decode_error",
        }
    }
}

/// Decodes one input's Avro records to JSON.
#[derive(Debug)]
pub struct AvroDecoder {
    schemas: FxHashMap<u32, Option<Schema>>,
    registry: Option<String>,
}

impl AvroDecoder {
    /// Reads the local schemas (a file that does not parse fails here,
    /// named).
    pub fn new(spec: &AvroSpec) -> Result<Self, StreamError> {
        let mut schemas = FxHashMap::default();
        for (id, path) in &spec.schemas {
            let text = std::fs::read_to_string(path)
                .map_err(|e| StreamError::Internal(format!("Avro schema {} (ID {id}): {e}", path.display())))?;
            let schema = Schema::parse_str(&text)
                .map_err(|e| StreamError::Internal(format!("Avro schema {} (ID {id}) does not parse: {e}", path.display())))?;
            schemas.insert(*id, Some(schema));
        }
        Ok(Self { schemas, registry: spec.registry.clone() })
    }

    /// The record as JSON text, or why it is rejected; `Err` only when the
    /// registry cannot be reached: the engine stops without committing the
    /// record's offset, so nothing is lost or rejected, and a restart reads
    /// it again.
    pub fn decode(&mut self, payload: &[u8]) -> Result<Result<Vec<u8>, AvroReject>, StreamError> {
        let (id, mut datum) = match payload {
            [MAGIC, a, b, c, d, rest @ ..] => (u32::from_be_bytes([*a, *b, *c, *d]), rest),
            _ => return Ok(Err(AvroReject::NotAvro)),
        };
        if !self.schemas.contains_key(&id) {
            let fetched = match &self.registry {
                Some(url) => fetch_schema(url, id)?,
                None => None,
            };
            self.schemas.insert(id, fetched);
        }
        let Some(Some(schema)) = self.schemas.get(&id) else { return Ok(Err(AvroReject::UnknownSchemaId(id))) };
        let value = match apache_avro::from_avro_datum(schema, &mut datum, None) {
            Ok(v) => v,
            Err(e) => return Ok(Err(AvroReject::Decode { id, reason: e.to_string() })),
        };
        if !datum.is_empty() {
            return Ok(Err(AvroReject::Decode { id, reason: format!("{} bytes left after the record", datum.len()) }));
        }
        // A datum cut short can decode to values of the wrong type.
        if !value.validate(schema) {
            return Ok(Err(AvroReject::Decode { id, reason: "the record does not match the schema (truncated?)".into() }));
        }
        let mut json = match serde_json::Value::try_from(value) {
            Ok(j) => j,
            Err(e) => return Ok(Err(AvroReject::Decode { id, reason: e.to_string() })),
        };
        drop_nulls(&mut json);
        if is_canonical(schema) {
            if let Some(serde_json::Value::Object(traits)) = json.get_mut("traits") {
                for v in traits.values_mut() {
                    if let serde_json::Value::String(s) = v {
                        if let Ok(parsed) = serde_json::from_str(s) {
                            *v = parsed;
                        }
                    }
                }
            }
        }
        Ok(Ok(serde_json::to_vec(&json).unwrap_or_default()))
    }
}

fn is_canonical(schema: &Schema) -> bool {
    matches!(schema, Schema::Record(r) if r.name.fullname(None) == CANONICAL_NAME)
}

/// Optional Avro fields decode to `null`; in JSON they are absent.
fn drop_nulls(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(o) => {
            o.retain(|_, x| !x.is_null());
            o.values_mut().for_each(drop_nulls);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// A JSON record in its Avro form: the trait values of the touchpoint and
/// profile records become JSON texts.
pub fn avro_form(json: &serde_json::Value, schema: &Schema) -> serde_json::Value {
    let mut json = json.clone();
    if matches!(schema, Schema::Record(r) if TRAIT_TEXT_RECORDS.contains(&r.name.fullname(None).as_str())) {
        if let Some(serde_json::Value::Object(traits)) = json.get_mut("traits") {
            for v in traits.values_mut() {
                *v = serde_json::Value::String(v.to_string());
            }
        }
    }
    json
}

/// Encodes a JSON record in the wire format with `schema` (registered as
/// `id`), in its [`avro_form`].
pub fn encode(json: &serde_json::Value, schema: &Schema, id: u32) -> Result<Vec<u8>, String> {
    let json = avro_form(json, schema);
    let value = apache_avro::types::Value::from(json).resolve(schema).map_err(|e| e.to_string())?;
    let mut out = vec![MAGIC];
    out.extend_from_slice(&id.to_be_bytes());
    out.extend(apache_avro::to_avro_datum(schema, value).map_err(|e| e.to_string())?);
    Ok(out)
}

/// Fetches a writer schema from a Confluent-compatible registry; `None`
/// when the registry does not know the ID.
fn fetch_schema(base: &str, id: u32) -> Result<Option<Schema>, StreamError> {
    let err = |reason: String| StreamError::Internal(format!("schema registry {base}: {reason}"));
    let rest = base.strip_prefix("http://").ok_or_else(|| err("only http:// URLs are supported".into()))?;
    let (host, prefix) = rest.split_once('/').map_or((rest, ""), |(h, p)| (h, p));
    let path = format!("/{}schemas/ids/{id}", if prefix.is_empty() { String::new() } else { format!("{}/", prefix.trim_end_matches('/')) });
    let (status, body) = http_get(host, &path).map_err(|e| err(e.to_string()))?;
    match status {
        200 => {
            let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| err(format!("answer for ID {id} is not JSON: {e}")))?;
            let text = v.get("schema").and_then(|s| s.as_str()).ok_or_else(|| err(format!("answer for ID {id} has no `schema`")))?;
            Schema::parse_str(text).map(Some).map_err(|e| err(format!("schema ID {id} does not parse: {e}")))
        }
        404 => Ok(None),
        s => Err(err(format!("answered HTTP {s} for schema ID {id}"))),
    }
}

/// A minimal HTTP/1.1 GET (the registry answers small JSON documents).
fn http_get(host: &str, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
    use std::net::ToSocketAddrs;
    let target = if host.contains(':') { host.to_string() } else { format!("{host}:80") };
    let addr = target
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, format!("{target} does not resolve")))?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes())?;
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

/// Checks a JSON record against an Avro schema strictly: every field of a
/// record present unless it has a default, no field the schema lacks,
/// values of the declared types (a union takes any of its branches).
pub fn check_json(v: &serde_json::Value, schema: &Schema) -> Result<(), String> {
    use serde_json::Value as J;
    match (schema, v) {
        (Schema::Null, J::Null) | (Schema::Boolean, J::Bool(_)) | (Schema::String, J::String(_)) => Ok(()),
        (Schema::Int, J::Number(n)) if n.as_i64().is_some_and(|i| i32::try_from(i).is_ok()) => Ok(()),
        (Schema::Long, J::Number(n)) if n.as_i64().is_some() => Ok(()),
        (Schema::Float | Schema::Double, J::Number(_)) => Ok(()),
        (Schema::Array(a), J::Array(items)) => {
            items.iter().enumerate().try_for_each(|(i, x)| check_json(x, &a.items).map_err(|e| format!("[{i}]{e}")))
        }
        (Schema::Map(m), J::Object(o)) => o.iter().try_for_each(|(k, x)| check_json(x, &m.types).map_err(|e| format!(".{k}{e}"))),
        (Schema::Union(u), _) => {
            if u.variants().iter().any(|s| check_json(v, s).is_ok()) {
                Ok(())
            } else {
                Err(format!(": {v} matches no branch of the union"))
            }
        }
        (Schema::Record(r), J::Object(o)) => {
            for k in o.keys() {
                if !r.lookup.contains_key(k) {
                    return Err(format!(".{k}: not a field of {}", r.name.fullname(None)));
                }
            }
            for f in &r.fields {
                match o.get(&f.name) {
                    Some(x) => check_json(x, &f.schema).map_err(|e| format!(".{}{e}", f.name))?,
                    None if f.default.is_some() => {}
                    None => return Err(format!(".{}: missing (no default)", f.name)),
                }
            }
            Ok(())
        }
        (s, _) => Err(format!(": {v} is not a {}", schema_kind(s))),
    }
}

fn schema_kind(s: &Schema) -> String {
    match s {
        Schema::Record(r) => format!("record {}", r.name.fullname(None)),
        other => format!("{:?}", apache_avro::schema::SchemaKind::from(other)).to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str = r#"{"type":"record","name":"Touchpoint","namespace":"io.idgraph","fields":[
        {"name":"event_id","type":"string"},
        {"name":"traits","type":["null",{"type":"map","values":"string"}],"default":null}]}"#;

    fn wire(id: u32, schema: &Schema, json: serde_json::Value) -> Vec<u8> {
        encode(&json, schema, id).unwrap()
    }

    fn decoder(dir: &std::path::Path, registry: Option<String>) -> AvroDecoder {
        let p = dir.join("t.avsc");
        std::fs::write(&p, SCHEMA).unwrap();
        AvroDecoder::new(&AvroSpec { schemas: vec![(7, p)], registry }).unwrap()
    }

    #[test]
    fn decodes_the_wire_format_and_parses_trait_texts_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = decoder(dir.path(), None);
        let schema = Schema::parse_str(SCHEMA).unwrap();
        let rec = wire(7, &schema, serde_json::json!({"event_id": "e-1", "traits": {"age": 42, "name": "Ann"}}));
        let json: serde_json::Value = serde_json::from_slice(&d.decode(&rec).unwrap().unwrap()).unwrap();
        assert_eq!(json, serde_json::json!({"event_id": "e-1", "traits": {"age": 42, "name": "Ann"}}));
        let rec = wire(7, &schema, serde_json::json!({"event_id": "e-2"}));
        let json: serde_json::Value = serde_json::from_slice(&d.decode(&rec).unwrap().unwrap()).unwrap();
        assert_eq!(json, serde_json::json!({"event_id": "e-2"}), "absent optional fields stay absent");
    }

    #[test]
    fn bad_records_are_rejected_with_their_reason() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = decoder(dir.path(), None);
        let schema = Schema::parse_str(SCHEMA).unwrap();
        assert_eq!(d.decode(b"{\"json\":1}").unwrap().unwrap_err(), AvroReject::NotAvro);
        assert_eq!(d.decode(&[0, 0, 0]).unwrap().unwrap_err(), AvroReject::NotAvro);
        let other = wire(8, &schema, serde_json::json!({"event_id": "e-1"}));
        assert_eq!(d.decode(&other).unwrap().unwrap_err(), AvroReject::UnknownSchemaId(8));
        let full = wire(7, &schema, serde_json::json!({"event_id": "e-1"}));
        for cut in [5, 6, 8] {
            assert_eq!(d.decode(&full[..cut]).unwrap().unwrap_err().code(), "avro_decode_error", "cut at {cut}");
        }
        let mut long = full.clone();
        long.push(0);
        assert_eq!(d.decode(&long).unwrap().unwrap_err().code(), "avro_decode_error", "bytes after the record");
        assert!(d.decode(&full).unwrap().is_ok());
    }

    #[test]
    fn a_local_schema_that_does_not_parse_names_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.avsc");
        std::fs::write(&p, "{\"type\": \"recrd\"}").unwrap();
        let e = AvroDecoder::new(&AvroSpec { schemas: vec![(1, p)], registry: None }).unwrap_err().to_string();
        assert!(e.contains("bad.avsc") && e.contains("ID 1"), "{e}");
    }

    #[test]
    fn schemas_come_from_a_registry_over_http() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            // One request for ID 9 (known, chunked answer), one for ID 10 (unknown).
            for _ in 0..2 {
                let (mut s, _) = listener.accept().unwrap();
                let mut req = Vec::new();
                let mut buf = [0u8; 256];
                while !req.ends_with(b"\r\n\r\n") {
                    let n = s.read(&mut buf).unwrap();
                    assert!(n > 0, "request cut short");
                    req.extend_from_slice(&buf[..n]);
                }
                let req = String::from_utf8_lossy(&req).to_string();
                if req.starts_with("GET /schemas/ids/9 ") {
                    let body = serde_json::json!({ "schema": SCHEMA }).to_string();
                    let answer = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n", body.len());
                    s.write_all(answer.as_bytes()).unwrap();
                } else {
                    s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n").unwrap();
                }
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let mut d = decoder(dir.path(), Some(format!("http://{addr}")));
        let schema = Schema::parse_str(SCHEMA).unwrap();
        let rec = wire(9, &schema, serde_json::json!({"event_id": "e-9"}));
        let json: serde_json::Value = serde_json::from_slice(&d.decode(&rec).unwrap().unwrap()).unwrap();
        assert_eq!(json["event_id"], "e-9");
        assert_eq!(
            d.decode(&wire(10, &schema, serde_json::json!({"event_id": "x"}))).unwrap().unwrap_err(),
            AvroReject::UnknownSchemaId(10)
        );
        // Both answers are cached: no third request.
        assert_eq!(d.decode(&rec).unwrap().unwrap().len(), json.to_string().len());
        server.join().unwrap();
    }

    #[test]
    fn json_is_checked_strictly() {
        let schema = Schema::parse_str(SCHEMA).unwrap();
        assert!(check_json(&serde_json::json!({"event_id": "e", "traits": {"a": "1"}}), &schema).is_ok());
        assert!(check_json(&serde_json::json!({"event_id": "e"}), &schema).is_ok(), "a default covers a missing field");
        let e = check_json(&serde_json::json!({"event_id": "e", "extra": 1}), &schema).unwrap_err();
        assert!(e.contains(".extra"), "{e}");
        let e = check_json(&serde_json::json!({"traits": null}), &schema).unwrap_err();
        assert!(e.contains(".event_id: missing"), "{e}");
        let e = check_json(&serde_json::json!({"event_id": 5}), &schema).unwrap_err();
        assert!(e.contains(".event_id"), "{e}");
        let e = check_json(&serde_json::json!({"event_id": "e", "traits": {"a": 1}}), &schema).unwrap_err();
        assert!(e.contains(".traits"), "{e}");
    }
}
