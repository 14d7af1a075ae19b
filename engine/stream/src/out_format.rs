//! The value format of the output topics (`profiles`, `lifecycle`,
//! `consent`, `rejects`): JSON (the default), or Avro in the Confluent
//! wire format with the schemas of `schemas/`, built into the binary, and
//! their IDs given by config or registered with a schema registry at
//! start-up (ADR 0005).
//!
//! The JSON case costs what it did before: the rendered profile line and
//! the serialised events are used as they are, the reject's bytes copied
//! once. Tombstones are not values: they stay null in both formats.

use crate::avro;
use crate::error::StreamError;
use crate::outbox::Dest;
use crate::topics::Topics;
use apache_avro::Schema;

/// The output schemas, as in `schemas/` (the contract of the topics).
const PROFILE: &str = include_str!("../../../schemas/profile.avsc");
const LIFECYCLE: &str = include_str!("../../../schemas/lifecycle.avsc");
const CONSENT: &str = include_str!("../../../schemas/consent.avsc");
const REJECTS: &str = include_str!("../../../schemas/rejects.avsc");

/// The output topics whose values idgraph encodes, by role.
pub const OUTPUTS: [Dest; 4] = [Dest::Profiles, Dest::Lifecycle, Dest::Consent, Dest::Rejects];

/// The schema text of an output topic's values (`None`: not an output).
pub fn schema_text(dest: Dest) -> Option<&'static str> {
    match dest {
        Dest::Profiles => Some(PROFILE),
        Dest::Lifecycle => Some(LIFECYCLE),
        Dest::Consent => Some(CONSENT),
        Dest::Rejects => Some(REJECTS),
        Dest::Cmd | Dest::Changelog => None,
    }
}

/// Schema IDs of the output topics (local IDs, or what a registry gave).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaIds {
    pub profiles: u32,
    pub lifecycle: u32,
    pub consent: u32,
    pub rejects: u32,
}

impl SchemaIds {
    fn get(&self, dest: Dest) -> u32 {
        match dest {
            Dest::Lifecycle => self.lifecycle,
            Dest::Consent => self.consent,
            Dest::Rejects => self.rejects,
            _ => self.profiles,
        }
    }
}

/// How the output values are written (the binary builds it from `[outputs]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum OutputSpec {
    #[default]
    Json,
    /// Avro, with these schema IDs in the wire header (no registry).
    AvroIds(SchemaIds),
    /// Avro, each schema registered at start-up under `<topic>-value` with
    /// the registry at this `http://` base URL, which gives the IDs.
    AvroRegistry(crate::registry::RegistryUrl),
}

#[derive(Debug)]
struct Writer {
    schema: Schema,
    id: u32,
}

#[derive(Debug)]
struct AvroOut {
    profiles: Writer,
    lifecycle: Writer,
    consent: Writer,
    rejects: Writer,
}

/// Encodes the values of the output topics; shared by the worker and ingest.
#[derive(Debug, Default)]
pub struct OutFormat {
    avro: Option<Box<AvroOut>>,
}

impl OutFormat {
    /// JSON values (the default).
    pub fn json() -> Self {
        Self::default()
    }

    /// The format of `spec`; for a registry, registers the four schemas
    /// (a failure names the registry and the subject and stops start-up).
    pub fn new(spec: &OutputSpec, topics: &Topics) -> Result<Self, StreamError> {
        let ids = match spec {
            OutputSpec::Json => return Ok(Self::json()),
            OutputSpec::AvroIds(ids) => *ids,
            OutputSpec::AvroRegistry(url) => {
                url.warn_if_in_clear("output schemas");
                let mut got = [0u32; 4];
                for (i, dest) in OUTPUTS.into_iter().enumerate() {
                    let subject = format!("{}-value", topics.of(dest));
                    got[i] = crate::registry::register(url, &subject, schema_text(dest).unwrap_or_default())?;
                    tracing::info!(subject, id = got[i], "output schema registered");
                }
                SchemaIds { profiles: got[0], lifecycle: got[1], consent: got[2], rejects: got[3] }
            }
        };
        let writer = |dest: Dest| -> Result<Writer, StreamError> {
            let schema = Schema::parse_str(schema_text(dest).unwrap_or_default())
                .map_err(|e| StreamError::Internal(format!("built-in schema of {} does not parse: {e}", dest.name())))?;
            Ok(Writer { schema, id: ids.get(dest) })
        };
        Ok(Self {
            avro: Some(Box::new(AvroOut {
                profiles: writer(Dest::Profiles)?,
                lifecycle: writer(Dest::Lifecycle)?,
                consent: writer(Dest::Consent)?,
                rejects: writer(Dest::Rejects)?,
            })),
        })
    }

    /// The schema IDs written, when the values are Avro.
    pub fn ids(&self) -> Option<SchemaIds> {
        self.avro.as_ref().map(|a| SchemaIds {
            profiles: a.profiles.id,
            lifecycle: a.lifecycle.id,
            consent: a.consent.id,
            rejects: a.rejects.id,
        })
    }

    /// The value of a profile record from its rendered JSON line.
    pub fn profile(&self, line: String) -> Result<Vec<u8>, StreamError> {
        let Some(a) = &self.avro else { return Ok(line.into_bytes()) };
        let json: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| StreamError::Internal(format!("a rendered profile is not JSON: {e}")))?;
        encode(Dest::Profiles, json, &a.profiles)
    }

    /// The value of a lifecycle or consent event.
    pub fn event(&self, dest: Dest, ev: &impl serde::Serialize) -> Result<Vec<u8>, StreamError> {
        let Some(a) = &self.avro else { return Ok(serde_json::to_vec(ev).unwrap_or_default()) };
        let w = match dest {
            Dest::Lifecycle => &a.lifecycle,
            Dest::Consent => &a.consent,
            other => return Err(StreamError::Internal(format!("{} does not carry events", other.name()))),
        };
        let json = serde_json::to_value(ev).map_err(|e| StreamError::Internal(format!("{} event: {e}", dest.name())))?;
        encode(dest, json, w)
    }

    /// The value of a reject: the original bytes (in Avro, as a `bytes` datum).
    pub fn reject(&self, payload: &[u8]) -> Result<Vec<u8>, StreamError> {
        let Some(a) = &self.avro else { return Ok(payload.to_vec()) };
        avro::encode_value(apache_avro::types::Value::Bytes(payload.to_vec()), &a.rejects.schema, a.rejects.id)
            .map_err(|_| encode_failed(Dest::Rejects, &a.rejects))
    }
}

fn encode(dest: Dest, json: serde_json::Value, w: &Writer) -> Result<Vec<u8>, StreamError> {
    avro::encode(json, &w.schema, w.id).map_err(|_| encode_failed(dest, w))
}

/// A record that does not encode is a bug (the schema tests cover every
/// output); the error leaves out the record and the encoder's message,
/// which can quote identifier values.
fn encode_failed(dest: Dest, w: &Writer) -> StreamError {
    StreamError::Internal(format!("a {} record does not encode with its schema (ID {}): it does not match schemas/", dest.name(), w.id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::fake::FakeRegistry;

    const IDS: SchemaIds = SchemaIds { profiles: 11, lifecycle: 12, consent: 13, rejects: 14 };

    fn profile_line() -> String {
        serde_json::json!({
            "profile_id": "01KJMDEB80X6PSPDFDZP8BFN3M", "version": 3,
            "identifiers": [{"type": "email", "value": "ann@example.com", "first_seen": "2026-03-01T10:00:00Z", "last_seen": "2026-03-01T10:00:00Z"}],
            "traits": {"first_name": "Ann", "age": 42},
            "metrics": {"event_count": 2, "first_seen": "2026-03-01T10:00:00Z", "last_seen": null, "order_count": 0,
                        "revenue_total": 0.0, "sources": {"web": 2}},
            "consent": {"email_marketing": {"granted": true, "at": "2026-03-01T10:00:00Z", "policy_version": null,
                                            "jurisdiction": "EU", "source": "web"}},
            "merged_from": [], "updated_at": "2026-03-01T10:00:00Z"})
        .to_string()
    }

    /// Decodes a wire-format value with the built-in schema of `dest`.
    fn decode(dest: Dest, id: u32, value: &[u8]) -> apache_avro::types::Value {
        let (got, datum) = avro::split_wire(value).unwrap();
        assert_eq!(got, id, "schema ID in the wire header");
        avro::decode_datum(&Schema::parse_str(schema_text(dest).unwrap()).unwrap(), datum).unwrap()
    }

    #[test]
    fn json_values_are_the_rendered_bytes_themselves() {
        let f = OutFormat::json();
        let line = profile_line();
        let ptr = line.as_ptr();
        let v = f.profile(line.clone()).unwrap();
        assert_eq!(v, line.as_bytes());
        let v = f.profile(line).unwrap();
        assert_eq!(v.as_ptr(), ptr, "no copy of the line");
        assert_eq!(f.reject(b"\x00raw").unwrap(), b"\x00raw");
        let ev = serde_json::json!({"type": "created", "profile_id": "p", "at": "2026-03-01T10:00:00Z"});
        assert_eq!(f.event(Dest::Lifecycle, &ev).unwrap(), serde_json::to_vec(&ev).unwrap());
        assert_eq!(f.ids(), None);
    }

    #[test]
    fn avro_values_decode_to_the_json_records_with_their_ids() {
        let topics = Topics::new("t");
        let f = OutFormat::new(&OutputSpec::AvroIds(IDS), &topics).unwrap();
        assert_eq!(f.ids(), Some(IDS));
        let line = profile_line();
        let schema = Schema::parse_str(PROFILE).unwrap();
        let back = avro::json_form(decode(Dest::Profiles, 11, &f.profile(line.clone()).unwrap()), &schema).unwrap();
        let want: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back, want, "nulls, numbers and trait values survive");
        avro::check_json(&avro::avro_form(&back, &schema), &schema).unwrap();

        let ev =
            serde_json::json!({"type": "conflict", "profile_id": "p", "rule": "max_per_profile:user_id", "at": "2026-03-01T10:00:00Z"});
        let schema = Schema::parse_str(LIFECYCLE).unwrap();
        let back = avro::json_form(decode(Dest::Lifecycle, 12, &f.event(Dest::Lifecycle, &ev).unwrap()), &schema).unwrap();
        assert_eq!(back["rule"], "max_per_profile:user_id");
        assert_eq!(back["related"], serde_json::json!([]), "absent fields take their schema default");
        avro::check_json(&back, &schema).unwrap();

        let ce = serde_json::json!({"profile_id": "p", "purpose": "sms", "granted": false, "at": "2026-03-01T10:00:00Z",
                                    "source": "web", "event_id": "e-1", "identifier_type": "phone"});
        let back = avro::json_form(decode(Dest::Consent, 13, &f.event(Dest::Consent, &ce).unwrap()), &Schema::parse_str(CONSENT).unwrap());
        assert_eq!(back.unwrap()["purpose"], "sms");

        let raw = b"{\"not json\xff";
        assert_eq!(decode(Dest::Rejects, 14, &f.reject(raw).unwrap()), apache_avro::types::Value::Bytes(raw.to_vec()));
        assert!(f.event(Dest::Profiles, &ev).is_err(), "only lifecycle and consent carry events");
    }

    #[test]
    fn a_record_that_does_not_match_fails_without_quoting_it() {
        let f = OutFormat::new(&OutputSpec::AvroIds(IDS), &Topics::new("t")).unwrap();
        let ev = serde_json::json!({"profile_id": "p", "purpose": "sms", "granted": "secret@example.com"});
        let e = f.event(Dest::Consent, &ev).unwrap_err().to_string();
        assert!(e.contains("consent") && e.contains("ID 13") && !e.contains("secret"), "{e}");
    }

    #[test]
    fn a_registry_gets_each_schema_under_its_topics_subject() {
        let r = FakeRegistry::start(&[]);
        let f = OutFormat::new(&OutputSpec::AvroRegistry(r.url.clone().into()), &Topics::new("acme")).unwrap();
        let seen = r.seen.lock().unwrap();
        let subjects: Vec<&str> = seen.requests.iter().map(|q| q.1.as_str()).collect();
        assert_eq!(
            subjects,
            [
                "/subjects/acme.profiles-value/versions",
                "/subjects/acme.lifecycle-value/versions",
                "/subjects/acme.consent-value/versions",
                "/subjects/acme.rejects-value/versions"
            ]
        );
        assert!(seen.requests.iter().all(|q| q.0 == "POST" && q.2 == crate::registry::CONTENT_TYPE));
        assert_eq!(seen.schemas, [PROFILE, LIFECYCLE, CONSENT, REJECTS], "the schemas of schemas/, as they are");
        assert_eq!(f.ids(), Some(SchemaIds { profiles: 100, lifecycle: 101, consent: 102, rejects: 103 }));
        drop(seen);
        let v = f.profile(profile_line()).unwrap();
        assert_eq!(avro::split_wire(&v).unwrap().0, 100, "the registry's ID is written");
    }

    #[test]
    fn a_registry_that_cannot_be_reached_stops_start_up_naming_it() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("http://127.0.0.1:{port}");
        let e = OutFormat::new(&OutputSpec::AvroRegistry(url.clone().into()), &Topics::new("idgraph")).unwrap_err().to_string();
        assert!(e.contains(&url) && e.contains("idgraph.profiles-value"), "{e}");
    }
}
