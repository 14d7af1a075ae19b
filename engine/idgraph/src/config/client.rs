//! `[kafka.client]`: the operator's own librdkafka properties (TLS, SASL,
//! tuning), given to every Kafka client of `run`.

use super::{key_err, ConfigError};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;

/// Property name to value, as librdkafka takes them (strings). TOML
/// booleans and numbers are accepted and written as librdkafka reads them.
/// A `-` in a name stands for `.`, so that the environment can set them:
/// `IDGRAPH__KAFKA__CLIENT__SASL_PASSWORD` is `sasl.password` (the
/// environment's `_` reads as `-`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ClientProperties(pub BTreeMap<String, String>);

/// A property's name as librdkafka spells it.
pub fn property_name(key: &str) -> String {
    key.replace('-', ".")
}

/// librdkafka's aliases an operator may set: both given, one would win
/// silently.
const ALIASES: [[&str; 2]; 7] = [
    ["sasl.mechanism", "sasl.mechanisms"],
    ["sasl.oauthbearer.client.credentials.client.id", "sasl.oauthbearer.client.id"],
    ["sasl.oauthbearer.client.credentials.client.secret", "sasl.oauthbearer.client.secret"],
    ["max.partition.fetch.bytes", "fetch.message.max.bytes"],
    ["linger.ms", "queue.buffering.max.ms"],
    ["retries", "message.send.max.retries"],
    ["delivery.timeout.ms", "message.timeout.ms"],
];

/// The key of an error about the properties together (not one of them).
pub const COMBINED: &str = "kafka.client";

/// The config key that names a property in error messages.
pub fn property_key(name: &str) -> String {
    format!("kafka.client.\"{name}\"")
}

impl ClientProperties {
    /// Each property on its own (reserved, unknown, invalid, missing
    /// file), then all of them as one client would take them.
    pub fn validate(&self, embedded: bool) -> Result<(), ConfigError> {
        if self.0.is_empty() {
            return Ok(());
        }
        if embedded {
            return Err(key_err("kafka.client", "applies to `kafka.brokers`; the embedded broker takes plain connections only"));
        }
        for (k, v) in &self.0 {
            idgraph_stream::client::check_property(k, v).map_err(|e| key_err(property_key(k), e))?;
        }
        for [a, b] in ALIASES {
            if self.0.contains_key(a) && self.0.contains_key(b) {
                return Err(key_err(property_key(b), format!("`{a}` names the same property: give one of them")));
            }
        }
        idgraph_stream::client::check_properties(&self.pairs()).map_err(|e| {
            let hint = if e.contains("password") {
                " (a secret can come from the environment: IDGRAPH__KAFKA__CLIENT__SASL_PASSWORD sets `sasl.password`)"
            } else {
                ""
            };
            key_err(COMBINED, format!("librdkafka cannot make a client of these properties: {e}{hint}"))
        })
    }

    pub fn pairs(&self) -> Vec<(String, String)> {
        self.0.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

/// Secrets stay out of any debug print of the configuration.
impl fmt::Debug for ClientProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| (k, if idgraph_stream::client::is_secret(k) { "[redacted]" } else { v.as_str() })))
            .finish()
    }
}

impl Serialize for ClientProperties {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for ClientProperties {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = BTreeMap::<String, toml::Value>::deserialize(d)?;
        let mut out = BTreeMap::new();
        for (k, v) in raw {
            let v = match v {
                toml::Value::String(s) => s,
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Table(t) => {
                    let inner = t.keys().next().map_or(String::new(), |i| format!(".{i}"));
                    return Err(serde::de::Error::custom(format!(
                        "`{k}` reads as a table: write a property name in quotes, `\"{k}{inner}\" = ...`"
                    )));
                }
                _ => return Err(serde::de::Error::custom(format!("`{k}`: a property is a string, a number or a boolean"))),
            };
            let name = property_name(&k);
            if out.insert(name.clone(), v).is_some() {
                return Err(serde::de::Error::custom(format!("`{name}` is given twice")));
            }
        }
        Ok(Self(out))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::load;

    #[test]
    fn client_properties_come_from_the_file_and_the_environment() {
        let text = "[kafka]\nbrokers = \"k:9093\"\n[kafka.client]\n\"security.protocol\" = \"sasl_ssl\"\n\
                    \"sasl.mechanisms\" = \"SCRAM-SHA-512\"\n\"sasl.username\" = \"idgraph\"\n\"ssl.ca.location\" = \"probe\"\n\
                    \"enable.ssl.certificate.verification\" = true\n\"socket.keepalive.enable\" = true\n\"fetch.wait.max.ms\" = 20\n";
        // A password that reads as a number stays as written.
        let c = load(text, &[("IDGRAPH__KAFKA__CLIENT__SASL_PASSWORD", "1.50")]).unwrap();
        let p = &c.kafka.client.0;
        assert_eq!(p["security.protocol"], "sasl_ssl");
        assert_eq!(p["sasl.password"], "1.50");
        assert_eq!(p["enable.ssl.certificate.verification"], "true");
        assert_eq!(p["fetch.wait.max.ms"], "20");
        let d = format!("{c:?}");
        assert!(d.contains("idgraph") && !d.contains("1.50"), "{d}");
    }

    #[test]
    fn a_bad_client_property_names_its_key() {
        let base = "[kafka]\nbrokers = \"k:9093\"\n[kafka.client]\n";
        for (line, key, want) in [
            ("\"enable.idempotence\" = false", "kafka.client.\"enable.idempotence\"", "effectively-once"),
            ("\"group.id\" = \"x\"", "kafka.client.\"group.id\"", "kafka.group-id"),
            ("\"no.such.thing\" = 1", "kafka.client.\"no.such.thing\"", "No such configuration property"),
            ("\"security.protocol\" = \"tls\"", "kafka.client.\"security.protocol\"", "Invalid value"),
            ("\"ssl.ca.location\" = \"/nope/ca.pem\"", "kafka.client.\"ssl.ca.location\"", "does not exist"),
            ("\"sasl.mechanisms\" = \"GSSAPI\"\n\"security.protocol\" = \"sasl_ssl\"", "kafka.client`", "GSSAPI"),
        ] {
            let e = load(&format!("{base}{line}\n"), &[]).unwrap_err().to_string();
            assert!(e.contains(key) && e.contains(want), "{line}: {e}");
        }
        let e = load("[kafka.client]\n\"client.id\" = \"x\"\n", &[]).unwrap_err().to_string();
        assert!(e.contains("embedded broker"), "{e}");
        let e = load(base, &[("IDGRAPH__KAFKA__CLIENT__ENABLE_IDEMPOTENCE", "false")]).unwrap_err().to_string();
        assert!(e.contains("IDGRAPH__KAFKA__CLIENT__ENABLE_IDEMPOTENCE"), "{e}");
        // A syntax error says where, without quoting the line (a secret).
        let e = load(&format!("{base}\"sasl.password\" = hunter2\n"), &[]).unwrap_err().to_string();
        assert!(e.contains("line 4, column") && !e.contains("hunter2"), "{e}");
        let e = load(&format!("{base}\"partitioner\" = \"random\"\n"), &[]).unwrap_err().to_string();
        assert!(e.contains("in order per profile"), "{e}");
        // An unquoted dotted name is a table in TOML: say to quote it.
        let e = load(&format!("{base}security.protocol = \"ssl\"\n"), &[]).unwrap_err().to_string();
        assert!(e.contains("\"security.protocol\" = ..."), "{e}");
        let e = load(base, &[("IDGRAPH__KAFKA__CLIENT__SASL__PASSWORD", "x")]).unwrap_err().to_string();
        assert!(e.contains("IDGRAPH__KAFKA__CLIENT__SASL__PASSWORD") && e.contains("one `__`"), "{e}");
        let e =
            load(&format!("{base}\"sasl.mechanism\" = \"PLAIN\"\n\"sasl.mechanisms\" = \"SCRAM-SHA-256\"\n"), &[]).unwrap_err().to_string();
        assert!(e.contains("kafka.client.\"sasl.mechanisms\"") && e.contains("same property"), "{e}");
        let e = load(&format!("{base}\"log_level\" = 7\n"), &[]).unwrap_err().to_string();
        assert!(e.contains("IDGRAPH_LOG"), "{e}");
        // A problem of the properties together blames no one variable,
        // and says where a password can come from.
        let e = load(
            &format!("{base}\"security.protocol\" = \"sasl_ssl\"\n\"sasl.mechanisms\" = \"PLAIN\"\n"),
            &[("IDGRAPH__KAFKA__CLIENT__SSL_KEY_PASSWORD", "x")],
        )
        .unwrap_err()
        .to_string();
        assert!(!e.contains("set by the environment variable") && e.contains("IDGRAPH__KAFKA__CLIENT__SASL_PASSWORD"), "{e}");
    }
}
