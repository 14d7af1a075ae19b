//! The TOML configuration (DESIGN §6), environment overrides and validation.
//!
//! Every key has a default, unknown keys are refused, and any key can be set
//! from the environment as `IDGRAPH__SECTION__KEY` (upper-cased, `-` as `_`).
//! Every error names the offending key.

use idgraph_core::config::{CoreConfig, IdentitySection, TraitsSection};
use idgraph_core::input::{FieldPath, Format, InputMapping};
use idgraph_stream::config::{Compression, StartAt};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

mod client;
mod env;
mod outputs;

pub use client::ClientProperties;
pub use outputs::OutputsSection;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct Config {
    pub kafka: KafkaSection,
    pub inputs: Vec<InputSection>,
    pub state: StateSection,
    pub http: HttpSection,
    pub identity: IdentitySection,
    pub traits: TraitsSection,
    pub replay: ReplaySection,
    pub run: RunSection,
    pub outputs: OutputsSection,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct KafkaSection {
    /// Absent: `run` starts the embedded broker.
    pub brokers: Option<String>,
    pub group_id: String,
    pub topic_prefix: String,
    /// Replication factor of the topics `run` creates (existing topics are
    /// kept as they are).
    pub replication_factor: i32,
    /// `earliest` or `latest`: where ingest starts on an input partition
    /// without a usable committed offset (its `auto.offset.reset`).
    pub input_start: StartAt,
    /// Compression of the record batches the engine produces (commands,
    /// changelog, outputs): `lz4` (default), `snappy`, `gzip` or `none`.
    pub compression: Compression,
    /// librdkafka properties for every client (TLS, SASL, tuning), with
    /// `kafka.brokers` only: `"security.protocol" = "sasl_ssl"`.
    pub client: ClientProperties,
}

impl Default for KafkaSection {
    fn default() -> Self {
        Self {
            brokers: None,
            group_id: "idgraph".into(),
            topic_prefix: "idgraph".into(),
            replication_factor: 1,
            input_start: StartAt::Earliest,
            compression: Compression::Lz4,
            client: ClientProperties::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct InputSection {
    pub topic: String,
    #[serde(default)]
    pub format: InputFormat,
    /// Avro only: the JSON shape of the decoded record (`canonical`: the
    /// twin in `schemas/touchpoint.avsc`; `segment`: Segment-spec fields).
    #[serde(default)]
    pub shape: Option<Format>,
    /// Avro only: a Confluent-compatible schema registry, `http://host:port`.
    #[serde(default)]
    pub schema_registry: Option<idgraph_stream::registry::RegistryUrl>,
    /// Avro only: local writer schemas by schema ID, `{ "1" = "touchpoint.avsc" }`.
    #[serde(default)]
    pub avro_schemas: std::collections::BTreeMap<String, PathBuf>,
    /// Source name for events that carry none.
    #[serde(default)]
    pub source: Option<String>,
    /// Extra identifier fields: `{ path = "context.traits.member_no", type = "member_no" }`.
    #[serde(default)]
    pub identifiers: Vec<IdentifierField>,
    /// Extra trait fields: `{ path = "properties.plan", name = "plan" }`.
    #[serde(default)]
    pub traits: Vec<TraitField>,
}

/// How an input topic's records are encoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InputFormat {
    #[default]
    Canonical,
    Segment,
    /// Confluent wire format; the decoded record is read as `shape`.
    Avro,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct IdentifierField {
    pub path: String,
    #[serde(rename = "type")]
    pub ty: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TraitField {
    pub path: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct StateSection {
    pub dir: PathBuf,
    /// Partitions of the identity graph; fixed when the state is created.
    pub partitions: u16,
    /// RocksDB block cache, MiB.
    pub block_cache_mb: u32,
    /// RocksDB memtable size per column family, MiB (two per family at
    /// most: one filling, one flushing). 64: a 10M replay ~3% faster than
    /// 32, peak RSS +50 MiB; 128 another ~3%, +130 MiB (BENCHMARKS).
    pub write_buffer_mb: u32,
    /// Decoded records kept in memory across batches (all partitions).
    pub cache_entries: usize,
    /// Memory for the owner cache (identifier -> owning profile, 24 bytes
    /// an identifier; all partitions), MiB; 0 turns it off.
    pub owner_cache_mb: u32,
}

impl Default for StateSection {
    fn default() -> Self {
        Self {
            dir: "idgraph-state".into(),
            partitions: 8,
            block_cache_mb: 256,
            write_buffer_mb: 64,
            cache_entries: 200_000,
            owner_cache_mb: 256,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct HttpSection {
    pub listen: String,
}

impl Default for HttpSection {
    fn default() -> Self {
        Self { listen: "127.0.0.1:9464".into() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct ReplaySection {
    /// Input lines per committed batch.
    pub batch_size: usize,
}

impl Default for ReplaySection {
    fn default() -> Self {
        Self { batch_size: 16_384 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct RunSection {
    /// Records of `idgraph.cmd` per committed batch (at most).
    pub batch_records: usize,
    /// How long a batch waits for more records once it has one, ms.
    pub batch_linger_ms: u64,
}

impl Default for RunSection {
    fn default() -> Self {
        Self { batch_records: 2_000, batch_linger_ms: 5 }
    }
}

/// A configuration error; `Display` names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("config file {path}: {reason}")]
    Syntax { path: String, reason: String },
    #[error("config key `{key}`: {problem}")]
    Key { key: String, problem: String },
}

/// Where and what a TOML syntax error is, without the line it quotes:
/// that line may hold a secret (`"sasl.password" = hunter2`).
fn syntax_reason(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim_end();
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message.to_string(),
    }
}

/// Resolves the files a config file names for reading (Avro schemas,
/// the `*.location` files of `kafka.client`) against the file's directory,
/// so a config works from any working directory. `state.dir` (written,
/// not read) and values set from the environment stay as given.
fn relative_to(table: &mut toml::Table, dir: &Path) {
    let fix = |v: &mut toml::Value| {
        if let toml::Value::String(s) = v {
            if !s.is_empty() && s != "probe" && Path::new(s.as_str()).is_relative() {
                *s = dir.join(s.as_str()).display().to_string();
            }
        }
    };
    if let Some(toml::Value::Array(inputs)) = table.get_mut("inputs") {
        for input in inputs {
            if let Some(toml::Value::Table(schemas)) = input.get_mut("avro-schemas") {
                schemas.iter_mut().for_each(|(_, v)| fix(v));
            }
        }
    }
    if let Some(toml::Value::Table(client)) = table.get_mut("kafka").and_then(|k| k.get_mut("client")) {
        client.iter_mut().filter(|(k, _)| client::property_name(k).ends_with(".location")).for_each(|(_, v)| fix(v));
    }
}

/// A registry URL: `http://` or `https://`, a host, credentials (if any)
/// well encoded. The problem never repeats the URL (it may hold a secret).
fn check_registry_url(url: &str) -> Result<(), String> {
    idgraph_stream::registry::check_url(url)
        .map_err(|e| format!("{e}: a URL like http://127.0.0.1:8081 or https://KEY:SECRET@registry.example.com"))
}

fn key_err(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Key { key: key.into(), problem: problem.into() }
}

impl Config {
    /// Loads the file (if any), applies `IDGRAPH__…` overrides from `vars`,
    /// and validates.
    pub fn load(path: Option<&Path>, vars: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let (name, text) = match path {
            Some(p) => (
                p.display().to_string(),
                std::fs::read_to_string(p).map_err(|e| ConfigError::Read { path: p.display().to_string(), reason: e.to_string() })?,
            ),
            None => ("<defaults>".to_string(), String::new()),
        };
        let mut table: toml::Table =
            text.parse().map_err(|e: toml::de::Error| ConfigError::Syntax { path: name.clone(), reason: syntax_reason(&text, &e) })?;
        if let Some(dir) = path.and_then(Path::parent).filter(|d| !d.as_os_str().is_empty()) {
            relative_to(&mut table, dir);
        }
        let mut applied = env::apply(&mut table, vars)?;
        let guessed = std::mem::take(&mut applied.guessed);
        let cfg = env::deserialize(table, guessed).map_err(|e| applied.name_source(e))?;
        cfg.validate().map_err(|e| applied.name_source(e))?;
        Ok(cfg)
    }

    /// Checks values; never "fixes" them.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let core = self.core()?;
        if self.state.partitions == 0 || self.state.partitions > 4096 {
            return Err(key_err("state.partitions", "must be between 1 and 4096"));
        }
        if self.state.dir.as_os_str().is_empty() {
            return Err(key_err("state.dir", "must not be empty"));
        }
        if self.state.block_cache_mb == 0 || self.state.write_buffer_mb == 0 {
            return Err(key_err("state.block-cache-mb", "cache and buffer sizes must be at least 1 MiB"));
        }
        if self.http.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(key_err("http.listen", format!("`{}` is not an address like 127.0.0.1:9464", self.http.listen)));
        }
        if self.kafka.topic_prefix.is_empty() || !self.kafka.topic_prefix.bytes().all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c))
        {
            return Err(key_err("kafka.topic-prefix", "use letters, digits, `.`, `_` and `-`"));
        }
        if self.kafka.group_id.is_empty() {
            return Err(key_err("kafka.group-id", "must not be empty"));
        }
        self.kafka.client.validate(self.kafka.brokers.is_none())?;
        if !(1..=16).contains(&self.kafka.replication_factor) {
            return Err(key_err("kafka.replication-factor", "must be between 1 and 16"));
        }
        if self.replay.batch_size == 0 || self.replay.batch_size > 1_000_000 {
            return Err(key_err("replay.batch-size", "must be between 1 and 1000000"));
        }
        if self.run.batch_records == 0 || self.run.batch_records > 1_000_000 {
            return Err(key_err("run.batch-records", "must be between 1 and 1000000"));
        }
        if self.run.batch_linger_ms > 10_000 {
            return Err(key_err("run.batch-linger-ms", "must be at most 10000"));
        }
        self.outputs.validate()?;
        for (i, input) in self.inputs.iter().enumerate() {
            if let Some(j) = self.inputs[..i].iter().position(|o| o.topic == input.topic) {
                return Err(key_err(format!("inputs[{i}].topic"), format!("`{}` is already inputs[{j}]", input.topic)));
            }
            if input.topic.is_empty() {
                return Err(key_err(format!("inputs[{i}].topic"), "must not be empty"));
            }
            let key = |k: &str| format!("inputs[{i}].{k}");
            if input.format == InputFormat::Avro {
                if input.avro_schemas.is_empty() && input.schema_registry.is_none() {
                    return Err(key_err(key("format"), "`avro` needs `schema-registry` or `avro-schemas` for the writer schemas"));
                }
                for (id, path) in &input.avro_schemas {
                    if id.parse::<u32>().is_err() {
                        return Err(key_err(key(&format!("avro-schemas.{id}")), "a schema ID is a number"));
                    }
                    if !path.is_file() {
                        return Err(key_err(key(&format!("avro-schemas.{id}")), format!("`{}` is not a readable file", path.display())));
                    }
                }
                if let Some(url) = &input.schema_registry {
                    check_registry_url(url).map_err(|e| key_err(key("schema-registry"), e))?;
                }
            } else {
                for (name, set) in [
                    ("shape", input.shape.is_some()),
                    ("schema-registry", input.schema_registry.is_some()),
                    ("avro-schemas", !input.avro_schemas.is_empty()),
                ] {
                    if set {
                        return Err(key_err(key(name), "only applies to `format = \"avro\"`"));
                    }
                }
            }
            for (j, f) in input.identifiers.iter().enumerate() {
                if FieldPath::parse(&f.path).is_none() {
                    return Err(key_err(format!("inputs[{i}].identifiers[{j}].path"), "not a dotted path like context.traits.member_no"));
                }
                if core.type_by_name(&f.ty).is_none() {
                    return Err(key_err(format!("inputs[{i}].identifiers[{j}].type"), format!("unknown identifier type `{}`", f.ty)));
                }
            }
            for (j, f) in input.traits.iter().enumerate() {
                if FieldPath::parse(&f.path).is_none() {
                    return Err(key_err(format!("inputs[{i}].traits[{j}].path"), "not a dotted path like properties.plan"));
                }
            }
        }
        Ok(())
    }

    /// The compiled core configuration.
    pub fn core(&self) -> Result<CoreConfig, ConfigError> {
        CoreConfig::build(&self.identity, &self.traits).map_err(|e| key_err(e.key, e.problem))
    }

    /// The mapping of the first input whose JSON shape is `format`, or the
    /// default one.
    pub fn mapping_for(&self, format: Format) -> InputMapping {
        let Some(input) = self.inputs.iter().find(|i| i.json_shape() == format) else { return InputMapping::default() };
        input.mapping()
    }
}

impl InputSection {
    /// The JSON shape the parser reads (Avro records are decoded to JSON).
    pub fn json_shape(&self) -> Format {
        match self.format {
            InputFormat::Canonical => Format::Canonical,
            InputFormat::Segment => Format::Segment,
            InputFormat::Avro => self.shape.unwrap_or(Format::Canonical),
        }
    }

    /// Where an Avro input finds its writer schemas (`None`: not Avro).
    pub fn avro(&self) -> Option<idgraph_stream::avro::AvroSpec> {
        (self.format == InputFormat::Avro).then(|| idgraph_stream::avro::AvroSpec {
            schemas: self.avro_schemas.iter().filter_map(|(id, p)| Some((id.parse().ok()?, p.clone()))).collect(),
            registry: self.schema_registry.clone(),
        })
    }

    /// The field mapping of this input (paths were checked by `validate`).
    pub fn mapping(&self) -> InputMapping {
        let input = self;
        InputMapping {
            identifiers: input.identifiers.iter().filter_map(|f| Some((FieldPath::parse(&f.path)?, f.ty.clone()))).collect(),
            traits: input.traits.iter().filter_map(|f| Some((FieldPath::parse(&f.path)?, f.name.clone()))).collect(),
            default_source: input.source.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, text).unwrap();
        Config::load(Some(&p), env.iter().map(|(a, b)| (a.to_string(), b.to_string())))
    }

    #[test]
    fn defaults_are_valid() {
        let c = Config::load(None, Vec::new()).unwrap();
        assert_eq!(c.kafka.group_id, "idgraph");
        assert_eq!(c.state.dir, PathBuf::from("idgraph-state"));
        assert_eq!(c.http.listen, "127.0.0.1:9464");
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = load("[state]\ndirr = \"x\"\n", &[]).unwrap_err().to_string();
        assert!(e.contains("state.dirr") || e.contains("`dirr`"), "{e}");
        assert!(e.contains("unknown field"), "{e}");
        let e = load("[bogus]\n", &[]).unwrap_err().to_string();
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        let e = load("[state]\npartitions = 0\n", &[]).unwrap_err().to_string();
        assert!(e.contains("`state.partitions`"), "{e}");
        let e = load("[http]\nlisten = \"nowhere\"\n", &[]).unwrap_err().to_string();
        assert!(e.contains("`http.listen`"), "{e}");
        let e = load("[state]\npartitions = \"many\"\n", &[]).unwrap_err().to_string();
        assert!(e.contains("state.partitions"), "{e}");
        let e = load("[[inputs]]\ntopic = \"t\"\nformat = \"xml\"\n", &[]).unwrap_err().to_string();
        assert!(e.contains("inputs[0].format"), "{e}");
        let e = load("[[inputs]]\ntopic = \"t\"\nformat = \"avro\"\n", &[]).unwrap_err().to_string();
        assert!(e.contains("inputs[0].format") && e.contains("schema-registry"), "{e}");
        let e = load("[[inputs]]\ntopic = \"t\"\nformat = \"avro\"\navro-schemas = { \"x\" = \"a.avsc\" }\n", &[]).unwrap_err().to_string();
        assert!(e.contains("inputs[0].avro-schemas.x"), "{e}");
        let e = load("[[inputs]]\ntopic = \"t\"\nformat = \"avro\"\navro-schemas = { \"1\" = \"/no/such.avsc\" }\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("inputs[0].avro-schemas.1") && e.contains("not a readable file"), "{e}");
        let e = load("[[inputs]]\ntopic = \"t\"\nformat = \"avro\"\nschema-registry = \"ftp://r\"\n", &[]).unwrap_err().to_string();
        assert!(e.contains("inputs[0].schema-registry") && e.contains("https://"), "{e}");
        let e =
            load("[[inputs]]\ntopic = \"t\"\nformat = \"avro\"\nschema-registry = \"https://k:s3cr%t@r\"\n", &[]).unwrap_err().to_string();
        assert!(e.contains("inputs[0].schema-registry") && !e.contains("s3cr"), "{e}");
        load("[[inputs]]\ntopic = \"t\"\nformat = \"avro\"\nschema-registry = \"https://k:s%40@r/base\"\n", &[]).unwrap();
        let e = load("[[inputs]]\ntopic = \"t\"\nshape = \"segment\"\n", &[]).unwrap_err().to_string();
        assert!(e.contains("inputs[0].shape") && e.contains("avro"), "{e}");
        let c =
            load("[[inputs]]\ntopic = \"t\"\nformat = \"avro\"\nshape = \"segment\"\nschema-registry = \"http://r:8081\"\n", &[]).unwrap();
        assert_eq!(c.inputs[0].json_shape(), Format::Segment);
        assert!(c.inputs[0].avro().is_some_and(|a| a.registry.as_deref() == Some("http://r:8081")));
        // A registry's credentials never show in a printed config.
        let c = load(
            "[[inputs]]\ntopic = \"t\"\nformat = \"avro\"\nschema-registry = \"https://k:in-s3cret@r\"\n[outputs]\nformat = \"avro\"\nschema-registry = \"https://k:out-s3cret@r\"\n",
            &[],
        )
        .unwrap();
        let printed = format!("{c:?} {:?} {:?}", c.inputs[0].avro(), c.outputs.spec());
        assert!(!printed.contains("s3cret") && printed.matches("https://***@r").count() == 4, "{printed}");
        assert!(c.inputs[0].avro().is_some_and(|a| a.registry.as_deref() == Some("https://k:in-s3cret@r")));
        let e = load("[[inputs]]\ntopic = \"t\"\nidentifiers = [{ path = \"a.b\", type = \"shoe\" }]\n", &[]).unwrap_err().to_string();
        assert!(e.contains("inputs[0].identifiers[0].type"), "{e}");
        let e = load("[identity.types.email]\nmax-per-profile = 0\n", &[]).unwrap_err().to_string();
        assert!(e.contains("identity.types.email.max-per-profile"), "{e}");
    }

    #[test]
    fn outputs_are_json_by_default_or_avro_with_ids_from_config_or_a_registry() {
        use idgraph_stream::out_format::{OutputSpec, SchemaIds};
        assert_eq!(Config::load(None, Vec::new()).unwrap().outputs.spec(), OutputSpec::Json);
        let c = load("[outputs]\nformat = \"avro\"\nschema-ids = { profiles = 11, lifecycle = 12, consent = 13, rejects = 14 }\n", &[])
            .unwrap();
        assert_eq!(c.outputs.spec(), OutputSpec::AvroIds(SchemaIds { profiles: 11, lifecycle: 12, consent: 13, rejects: 14 }));
        let c = load("[outputs]\nformat = \"avro\"\nschema-registry = \"http://r:8081\"\n", &[]).unwrap();
        assert_eq!(c.outputs.spec(), OutputSpec::AvroRegistry("http://r:8081".into()));
        let c = load("", &[("IDGRAPH__OUTPUTS__FORMAT", "avro"), ("IDGRAPH__OUTPUTS__SCHEMA_REGISTRY", "http://r:8081")]).unwrap();
        assert_eq!(c.outputs.spec(), OutputSpec::AvroRegistry("http://r:8081".into()), "set from the environment");
    }

    #[test]
    fn bad_outputs_are_named() {
        let err = |text: &str| load(text, &[]).unwrap_err().to_string();
        let e = err("[outputs]\nformat = \"xml\"\n");
        assert!(e.contains("outputs.format"), "{e}");
        let e = err("[outputs]\nformat = \"avro\"\n");
        assert!(e.contains("`outputs.format`") && e.contains("schema-registry") && e.contains("schema-ids"), "{e}");
        let e = err("[outputs]\nschema-registry = \"http://r:8081\"\n");
        assert!(e.contains("`outputs.schema-registry`") && e.contains("avro"), "{e}");
        let e = err("[outputs]\nschema-ids = { profiles = 1, lifecycle = 2, consent = 3, rejects = 4 }\n");
        assert!(e.contains("`outputs.schema-ids`") && e.contains("avro"), "{e}");
        let e = err("[outputs]\nformat = \"avro\"\nschema-registry = \"registry:8081\"\n");
        assert!(e.contains("`outputs.schema-registry`") && e.contains("http://"), "{e}");
        let e = err("[outputs]\nformat = \"avro\"\nschema-registry = \"http://r\"\nschema-ids = { profiles = 1, lifecycle = 2, consent = 3, rejects = 4 }\n");
        assert!(e.contains("`outputs.schema-ids`") && e.contains("not both"), "{e}");
        let e = err("[outputs]\nformat = \"avro\"\nschema-ids = { profiles = 1, lifecycle = 2, consent = 3 }\n");
        assert!(e.contains("outputs.schema-ids") && e.contains("rejects"), "a missing topic is named: {e}");
        let e = err("[outputs]\nformat = \"avro\"\nschema-ids = { profiles = 1, lifecycle = 2, consent = 3, rejects = 4, cmd = 5 }\n");
        assert!(e.contains("outputs.schema-ids") && e.contains("cmd"), "an unknown topic is named: {e}");
        let e = err("[outputs]\nformat = \"avro\"\nschema-ids = { profiles = 1, lifecycle = 2, consent = 2, rejects = 4 }\n");
        assert!(e.contains("`outputs.schema-ids.consent`") && e.contains("lifecycle"), "{e}");
        let e = err("[outputs]\nformat = \"avro\"\nschema-ids = { profiles = -1, lifecycle = 2, consent = 3, rejects = 4 }\n");
        assert!(e.contains("outputs.schema-ids.profiles"), "{e}");
        let e = err("[outputs]\nformt = \"avro\"\n");
        assert!(e.contains("formt"), "{e}");
    }

    #[test]
    fn the_example_config_loads() {
        // From any working directory: its schema paths are relative to it.
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/idgraph.example.toml");
        let c = Config::load(Some(&example), []).unwrap();
        assert_eq!(c.inputs.len(), 2);
        assert_eq!(c.kafka.replication_factor, 1);
    }

    #[test]
    fn files_a_config_reads_are_relative_to_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("conf/avro")).unwrap();
        std::fs::write(dir.path().join("conf/avro/t.avsc"), "\"string\"").unwrap();
        std::fs::write(dir.path().join("conf/ca.pem"), "").unwrap();
        let p = dir.path().join("conf/idgraph.toml");
        std::fs::write(
            &p,
            "[kafka]\nbrokers = \"k:9093\"\n[kafka.client]\n\"ssl.ca.location\" = \"ca.pem\"\n\
             [[inputs]]\ntopic = \"t\"\nformat = \"avro\"\navro-schemas = { \"1\" = \"avro/t.avsc\" }\n[state]\ndir = \"st\"\n",
        )
        .unwrap();
        // Found from the crate's directory, where neither file is.
        let c = Config::load(Some(&p), []).unwrap();
        assert_eq!(c.inputs[0].avro_schemas["1"], dir.path().join("conf/avro/t.avsc"));
        assert_eq!(c.kafka.client.0["ssl.ca.location"], dir.path().join("conf/ca.pem").display().to_string());
        assert_eq!(c.state.dir, PathBuf::from("st"), "state.dir stays as given");
    }

    #[test]
    fn replication_factor_and_input_start_are_checked() {
        let c = load("[kafka]\nreplication-factor = 3\ninput-start = \"latest\"\n", &[]).unwrap();
        assert_eq!(c.kafka.input_start, StartAt::Latest);
        assert_eq!(load("", &[]).unwrap().kafka.input_start, StartAt::Earliest);
        let err = |text: &str| load(text, &[]).unwrap_err().to_string();
        let e = err("[kafka]\nreplication-factor = 0\n");
        assert!(e.contains("kafka.replication-factor"), "{e}");
        let e = err("[kafka]\ninput-start = \"newest\"\n");
        assert!(e.contains("kafka.input-start") && e.contains("newest"), "{e}");
    }

    #[test]
    fn an_error_from_an_environment_override_names_the_variable() {
        let e = load("", &[("IDGRAPH__STATE__FOO", "1")]).unwrap_err().to_string();
        assert!(e.contains("`state.foo`") && e.contains("IDGRAPH__STATE__FOO"), "{e}");
        let e = load("", &[("IDGRAPH__STATE__PARTITIONS", "0")]).unwrap_err().to_string();
        assert!(e.contains("`state.partitions`") && e.contains("IDGRAPH__STATE__PARTITIONS"), "{e}");
        // From the file: no variable named.
        let e = load("[state]\npartitions = 0\n", &[("IDGRAPH__STATE__DIR", "/tmp/x")]).unwrap_err().to_string();
        assert!(e.contains("`state.partitions`") && !e.contains("IDGRAPH__"), "{e}");
    }

    #[test]
    fn compression_defaults_to_lz4_and_is_checked() {
        assert_eq!(load("", &[]).unwrap().kafka.compression, Compression::Lz4);
        let c = load("[kafka]\ncompression = \"none\"\n", &[]).unwrap();
        assert_eq!(c.kafka.compression, Compression::None);
        assert_eq!(c.kafka.compression.as_codec(), "none");
        let c = load("", &[("IDGRAPH__KAFKA__COMPRESSION", "snappy")]).unwrap();
        assert_eq!(c.kafka.compression, Compression::Snappy);
        let e = load("[kafka]\ncompression = \"zstd\"\n", &[]).unwrap_err().to_string();
        assert!(e.contains("kafka.compression") && e.contains("zstd"), "{e}");
    }
}
