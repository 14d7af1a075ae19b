//! Avro inputs in the Confluent wire format (magic byte 0, a big-endian
//! `u32` schema ID, then the Avro binary datum), and a strict check of JSON
//! records against the Avro schemas in `schemas/`.
//!
//! Writer schemas come from local `.avsc` files declared per ID, or from a
//! schema registry ([`crate::registry`], cached). A decoded record becomes
//! JSON and goes through the input's JSON parser (canonical or Segment
//! shape, field mapping by config). Trait values of the touchpoint and
//! profile records are JSON texts in Avro ([`has_trait_texts`]): encoding
//! writes them, decoding parses them back.

use crate::error::StreamError;
use apache_avro::Schema;
use rustc_hash::FxHashMap;
use std::path::PathBuf;

/// The Confluent wire format's first byte.
pub const MAGIC: u8 = 0;
/// Records whose `traits` map holds JSON texts in Avro (JSON values in
/// JSON): the canonical touchpoint's twin and the golden profile.
const TRAIT_TEXT_RECORDS: [&str; 2] = ["io.idgraph.Touchpoint", "io.idgraph.Profile"];

/// Whether `schema`'s `traits` values are JSON texts in Avro: the one
/// place that decides it, for encoding and decoding alike.
pub fn has_trait_texts(schema: &Schema) -> bool {
    matches!(schema, Schema::Record(r) if TRAIT_TEXT_RECORDS.contains(&r.name.fullname(None).as_str()))
}

/// The schema ID and the Avro datum of a record in the wire format.
pub fn split_wire(payload: &[u8]) -> Option<(u32, &[u8])> {
    match payload {
        [MAGIC, a, b, c, d, rest @ ..] => Some((u32::from_be_bytes([*a, *b, *c, *d]), rest)),
        _ => None,
    }
}

/// Decodes one Avro datum strictly: nothing may be left after it, and the
/// value must match the schema (a datum cut short can decode to values of
/// the wrong type).
pub fn decode_datum(schema: &Schema, mut datum: &[u8]) -> Result<apache_avro::types::Value, String> {
    let value = apache_avro::from_avro_datum(schema, &mut datum, None).map_err(|e| e.to_string())?;
    if !datum.is_empty() {
        return Err(format!("{} bytes left after the record", datum.len()));
    }
    if !value.validate(schema) {
        return Err("the record does not match the schema (truncated?)".into());
    }
    Ok(value)
}

/// A decoded Avro value in its JSON form: trait texts parsed back (see
/// [`has_trait_texts`]); optional fields stay `null`.
pub fn json_form(value: apache_avro::types::Value, schema: &Schema) -> Result<serde_json::Value, String> {
    let mut json = serde_json::Value::try_from(value).map_err(|e| e.to_string())?;
    if has_trait_texts(schema) {
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
    Ok(json)
}

/// Where an Avro input finds its writer schemas.
#[derive(Debug, Clone, Default)]
pub struct AvroSpec {
    /// Local writer schemas by ID.
    pub schemas: Vec<(u32, PathBuf)>,
    /// A schema registry base URL (`http://host:port[/path]`).
    pub registry: Option<crate::registry::RegistryUrl>,
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
    /// Every reason code.
    pub const CODES: [&'static str; 3] = ["not_avro", "unknown_schema_id", "avro_decode_error"];

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
    registry: Option<crate::registry::RegistryUrl>,
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
        if let Some(url) = &spec.registry {
            url.warn_if_in_clear("input schemas");
        }
        Ok(Self { schemas, registry: spec.registry.clone() })
    }

    /// The record as JSON text, or why it is rejected; `Err` only when the
    /// registry cannot be reached: the engine stops without committing the
    /// record's offset, so nothing is lost or rejected, and a restart reads
    /// it again.
    pub fn decode(&mut self, payload: &[u8]) -> Result<Result<Vec<u8>, AvroReject>, StreamError> {
        let Some((id, datum)) = split_wire(payload) else { return Ok(Err(AvroReject::NotAvro)) };
        if !self.schemas.contains_key(&id) {
            let fetched = match &self.registry {
                Some(url) => crate::registry::fetch_schema(url, id)?,
                None => None,
            };
            self.schemas.insert(id, fetched);
        }
        let Some(Some(schema)) = self.schemas.get(&id) else { return Ok(Err(AvroReject::UnknownSchemaId(id))) };
        let decoded = decode_datum(schema, datum).and_then(|v| json_form(v, schema));
        let mut json = match decoded {
            Ok(j) => j,
            Err(reason) => return Ok(Err(AvroReject::Decode { id, reason })),
        };
        drop_nulls(&mut json);
        Ok(Ok(serde_json::to_vec(&json).unwrap_or_default()))
    }
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

/// A JSON record in its Avro form: trait values become JSON texts where
/// [`has_trait_texts`] says so.
pub fn avro_form(json: &serde_json::Value, schema: &Schema) -> serde_json::Value {
    into_avro_form(json.clone(), schema)
}

fn into_avro_form(mut json: serde_json::Value, schema: &Schema) -> serde_json::Value {
    if has_trait_texts(schema) {
        if let Some(serde_json::Value::Object(traits)) = json.get_mut("traits") {
            for v in traits.values_mut() {
                *v = serde_json::Value::String(v.to_string());
            }
        }
    }
    json
}

/// Encodes a JSON record in the wire format with `schema` (registered as
/// `id`), in its [`avro_form`]; consumes the record (no copy of it).
pub fn encode(json: serde_json::Value, schema: &Schema, id: u32) -> Result<Vec<u8>, String> {
    let value = apache_avro::types::Value::from(into_avro_form(json, schema));
    encode_value(value, schema, id)
}

/// An Avro value in the wire format with `schema` (registered as `id`).
pub fn encode_value(value: apache_avro::types::Value, schema: &Schema, id: u32) -> Result<Vec<u8>, String> {
    let value = value.resolve(schema).map_err(|e| e.to_string())?;
    let mut out = vec![MAGIC];
    out.extend_from_slice(&id.to_be_bytes());
    out.extend(apache_avro::to_avro_datum(schema, value).map_err(|e| e.to_string())?);
    Ok(out)
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
        encode(json, schema, id).unwrap()
    }

    fn decoder(dir: &std::path::Path, registry: Option<crate::registry::RegistryUrl>) -> AvroDecoder {
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
        let registry = crate::registry::fake::FakeRegistry::start(&[(9, SCHEMA)]);
        let dir = tempfile::tempdir().unwrap();
        let mut d = decoder(dir.path(), Some(registry.url.clone().into()));
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
        let paths: Vec<String> = registry.seen.lock().unwrap().requests.iter().map(|r| format!("{} {}", r.0, r.1)).collect();
        assert_eq!(paths, ["GET /schemas/ids/9", "GET /schemas/ids/10"]);
    }

    #[test]
    fn trait_texts_are_one_decision_for_encoding_and_decoding() {
        let profile = Schema::parse_str(
            r#"{"type":"record","name":"Profile","namespace":"io.idgraph","fields":[
            {"name":"traits","type":{"type":"map","values":"string"}}]}"#,
        )
        .unwrap();
        let other = Schema::parse_str(
            r#"{"type":"record","name":"Other","namespace":"io.idgraph","fields":[
            {"name":"traits","type":{"type":"map","values":"string"}}]}"#,
        )
        .unwrap();
        assert!(has_trait_texts(&profile) && has_trait_texts(&Schema::parse_str(SCHEMA).unwrap()));
        assert!(!has_trait_texts(&other));
        let json = serde_json::json!({"traits": {"age": 42, "name": "Ann", "tags": ["a"]}});
        let rec = encode(json.clone(), &profile, 5).unwrap();
        let (id, datum) = split_wire(&rec).unwrap();
        assert_eq!(id, 5);
        let back = json_form(decode_datum(&profile, datum).unwrap(), &profile).unwrap();
        assert_eq!(back, json, "a profile's traits round-trip through their JSON texts");
        // Records the predicate does not name keep their strings as they are.
        let texts = serde_json::json!({"traits": {"age": "42"}});
        let rec = encode(texts.clone(), &other, 5).unwrap();
        assert_eq!(json_form(decode_datum(&other, &rec[5..]).unwrap(), &other).unwrap(), texts);
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
