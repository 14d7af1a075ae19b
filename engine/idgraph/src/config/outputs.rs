//! `[outputs]`: the value format of the output topics (JSON or Avro)
//! and where Avro's schema IDs come from.

use super::{check_registry_url, key_err, ConfigError};
use serde::{Deserialize, Serialize};

/// The value format of the output topics of `run` (`replay` writes NDJSON
/// files whatever it says). ADR 0005.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct OutputsSection {
    pub format: OutputFormat,
    /// Avro: a Confluent-compatible registry, `http://host:port` or
    /// `https://KEY:SECRET@host`; each
    /// output schema is registered under `<topic>-value` at start-up and
    /// the IDs it answers are written.
    pub schema_registry: Option<idgraph_stream::registry::RegistryUrl>,
    /// Avro without a registry: the schema ID written for each output
    /// topic, `{ profiles = 11, lifecycle = 12, consent = 13, rejects = 14 }`.
    pub schema_ids: Option<OutputSchemaIds>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutputFormat {
    #[default]
    Json,
    /// Confluent wire format with the schemas of `schemas/`.
    Avro,
}

/// Local schema IDs of the output topics (all four are required).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct OutputSchemaIds {
    pub profiles: u32,
    pub lifecycle: u32,
    pub consent: u32,
    pub rejects: u32,
}

impl OutputsSection {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        match self.format {
            OutputFormat::Json => {
                for (name, set) in [("schema-registry", self.schema_registry.is_some()), ("schema-ids", self.schema_ids.is_some())] {
                    if set {
                        return Err(key_err(format!("outputs.{name}"), "only applies to `format = \"avro\"`"));
                    }
                }
            }
            OutputFormat::Avro => match (&self.schema_registry, &self.schema_ids) {
                (None, None) => {
                    return Err(key_err("outputs.format", "`avro` needs `schema-registry` or `schema-ids` for the schema IDs"));
                }
                (Some(_), Some(_)) => {
                    return Err(key_err(
                        "outputs.schema-ids",
                        "give either `schema-registry` (it assigns the IDs) or `schema-ids`, not both",
                    ));
                }
                (Some(url), None) => check_registry_url(url).map_err(|e| key_err("outputs.schema-registry", e))?,
                (None, Some(ids)) => {
                    let named =
                        [("profiles", ids.profiles), ("lifecycle", ids.lifecycle), ("consent", ids.consent), ("rejects", ids.rejects)];
                    for (i, (name, id)) in named.iter().enumerate() {
                        if let Some((other, _)) = named[..i].iter().find(|(_, o)| o == id) {
                            return Err(key_err(
                                format!("outputs.schema-ids.{name}"),
                                format!("ID {id} is already `outputs.schema-ids.{other}`: each schema needs its own ID"),
                            ));
                        }
                    }
                }
            },
        }
        Ok(())
    }

    /// What the engine needs (checked by `validate`).
    pub fn spec(&self) -> idgraph_stream::out_format::OutputSpec {
        use idgraph_stream::out_format::{OutputSpec, SchemaIds};
        match (self.format, &self.schema_registry, &self.schema_ids) {
            (OutputFormat::Json, ..) => OutputSpec::Json,
            (OutputFormat::Avro, Some(url), _) => OutputSpec::AvroRegistry(url.clone()),
            (OutputFormat::Avro, None, Some(i)) => {
                OutputSpec::AvroIds(SchemaIds { profiles: i.profiles, lifecycle: i.lifecycle, consent: i.consent, rejects: i.rejects })
            }
            // `validate` refuses Avro without either.
            (OutputFormat::Avro, None, None) => OutputSpec::Json,
        }
    }
}
