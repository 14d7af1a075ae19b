//! `IDGRAPH__SECTION__KEY` environment overrides of the TOML configuration.

use super::{key_err, Config, ConfigError};

/// An override read as a number, boolean or array where no default says
/// what its key holds: its path and the value as written.
pub(super) struct Guess {
    parts: Vec<String>,
    raw: String,
}

/// Applies the `IDGRAPH__…` variables of `env` to `table`. A key whose
/// default is a string takes the value as written
/// (`IDGRAPH__KAFKA__GROUP_ID=2024` is the group "2024"); others are read as
/// TOML values when they parse as one, and returned as guesses.
pub(super) fn apply(table: &mut toml::Table, env: impl IntoIterator<Item = (String, String)>) -> Result<Applied, ConfigError> {
    let defaults = toml::Value::try_from(Config::default()).ok();
    let mut guessed = Vec::new();
    let mut sources = Vec::new();
    for (k, v) in env {
        let Some(rest) = k.strip_prefix("IDGRAPH__") else { continue };
        let parts: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase().replace('_', "-")).collect();
        if parts.len() < 2 || parts.iter().any(String::is_empty) {
            return Err(key_err(k.clone(), "environment overrides look like IDGRAPH__SECTION__KEY"));
        }
        // `kafka.client` properties are librdkafka's: dotted names, and
        // values taken as written (a password may read as a number).
        if parts.len() > 3 && parts[0] == "kafka" && parts[1] == "client" {
            return Err(key_err(k.clone(), "a `kafka.client` property is named after one `__`: IDGRAPH__KAFKA__CLIENT__SASL_PASSWORD"));
        }
        if let [section, client, name] = &parts[..] {
            if section == "kafka" && client == "client" {
                let name = super::client::property_name(name);
                let key = super::client::property_key(&name);
                insert_at(table, &[section.clone(), client.clone(), name], toml::Value::String(v))?;
                sources.push((key, k));
                continue;
            }
        }
        let is_string = defaults.as_ref().and_then(|d| parts.iter().try_fold(d, |t, p| t.get(p))).is_some_and(toml::Value::is_str);
        let value = if is_string { toml::Value::String(v.clone()) } else { parse_value(&v) };
        if !value.is_str() {
            guessed.push(Guess { parts: parts.clone(), raw: v });
        }
        insert_at(table, &parts, value)?;
        sources.push((parts.join("."), k));
    }
    Ok(Applied { guessed, sources })
}

/// What [`apply`] did: its guesses, and each overridden key (dotted) with
/// the variable that set it.
pub(super) struct Applied {
    pub guessed: Vec<Guess>,
    sources: Vec<(String, String)>,
}

impl Applied {
    /// Names the variable behind an error's key, when one set it (or set a
    /// key under it): the operator looks there, not in the file.
    pub fn name_source(&self, e: ConfigError) -> ConfigError {
        let ConfigError::Key { key, problem } = e else { return e };
        // About all the client properties together: no one variable is to blame.
        if key == super::client::COMBINED {
            return ConfigError::Key { key, problem };
        }
        let under = |a: &str, b: &str| a.strip_prefix(b).is_some_and(|r| r.is_empty() || r.starts_with('.') || r.starts_with('['));
        match self.sources.iter().find(|(k, _)| under(k, &key) || under(&key, k)) {
            Some((_, var)) => ConfigError::Key { key, problem: format!("{problem} (set by the environment variable {var})") },
            None => ConfigError::Key { key, problem },
        }
    }
}

/// Deserializes `table`; a guessed override whose key turns out to want a
/// string is taken as written instead, and the table read again. Errors
/// name the key.
pub(super) fn deserialize(mut table: toml::Table, mut guessed: Vec<Guess>) -> Result<Config, ConfigError> {
    loop {
        let e = match serde_path_to_error::deserialize(toml::Value::Table(table.clone())) {
            Ok(cfg) => return Ok(cfg),
            Err(e) => e,
        };
        let key = e.path().to_string();
        let wants_string = e.inner().to_string().contains("expected a string");
        match guessed.iter().position(|g| g.parts.join(".") == key) {
            Some(i) if wants_string => {
                let g = guessed.swap_remove(i);
                insert_at(&mut table, &g.parts, toml::Value::String(g.raw))?;
            }
            _ => return Err(key_err(if key == "." { "<root>".into() } else { key }, e.into_inner().to_string())),
        }
    }
}

/// Sets the value at a dotted path, creating the tables on the way.
fn insert_at(table: &mut toml::Table, parts: &[String], value: toml::Value) -> Result<(), ConfigError> {
    let mut t = table;
    for p in &parts[..parts.len() - 1] {
        let entry = t.entry(p.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        t = entry.as_table_mut().ok_or_else(|| key_err(parts.join("."), "cannot be set from the environment (not a table)"))?;
    }
    t.insert(parts[parts.len() - 1].clone(), value);
    Ok(())
}

/// Environment values are TOML values when they parse as one (numbers,
/// booleans, arrays like `["crm","web"]`), else strings.
fn parse_value(v: &str) -> toml::Value {
    if v.trim_start().starts_with('[') {
        if let Ok(mut t) = format!("v = {v}").parse::<toml::Table>() {
            if let Some(arr) = t.remove("v") {
                return arr;
            }
        }
    }
    if let Ok(i) = v.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    if let Ok(b) = v.parse::<bool>() {
        return toml::Value::Boolean(b);
    }
    if let Ok(f) = v.parse::<f64>() {
        if v.contains('.') {
            return toml::Value::Float(f);
        }
    }
    toml::Value::String(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::super::tests::load;
    use std::path::PathBuf;

    #[test]
    fn environment_overrides_any_key() {
        let c = load(
            "[state]\ndir = \"a\"\n",
            &[
                ("IDGRAPH__STATE__DIR", "b"),
                ("IDGRAPH__KAFKA__BROKERS", "k:9092"),
                ("IDGRAPH__STATE__PARTITIONS", "4"),
                ("IDGRAPH__KAFKA__GROUP_ID", "g2"),
                ("IDGRAPH__TRAITS__SOURCE_PRIORITY", "[\"crm\", \"web\"]"),
                ("OTHER", "x"),
            ],
        )
        .unwrap();
        assert_eq!(c.state.dir, PathBuf::from("b"));
        assert_eq!(c.kafka.brokers.as_deref(), Some("k:9092"));
        assert_eq!(c.state.partitions, 4);
        assert_eq!(c.kafka.group_id, "g2");
        assert_eq!(c.traits.source_priority, vec!["crm".to_string(), "web".to_string()]);
        let e = load("", &[("IDGRAPH__STATE__NOPE", "1")]).unwrap_err().to_string();
        assert!(e.contains("nope"), "{e}");
    }

    #[test]
    fn an_environment_value_for_a_string_key_stays_a_string() {
        let c =
            load("", &[("IDGRAPH__KAFKA__GROUP_ID", "2024"), ("IDGRAPH__STATE__DIR", "true"), ("IDGRAPH__KAFKA__REPLICATION_FACTOR", "3")])
                .unwrap();
        assert_eq!(c.kafka.group_id, "2024");
        assert_eq!(c.state.dir, PathBuf::from("true"));
        assert_eq!(c.kafka.replication_factor, 3);
        // Without a default to tell: taken as written when the key wants a string.
        let c = load("[identity.types.sku]\npattern = \"x\"\n", &[("IDGRAPH__IDENTITY__TYPES__SKU__PATTERN", "1234")]).unwrap();
        assert_eq!(c.identity.types.get("sku").and_then(|t| t.pattern.as_deref()), Some("1234"));
        // A number for a number key is still checked as one.
        let e = load("", &[("IDGRAPH__STATE__PARTITIONS", "many")]).unwrap_err().to_string();
        assert!(e.contains("state.partitions"), "{e}");
    }
}
