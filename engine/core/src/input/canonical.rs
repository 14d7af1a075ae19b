//! Canonical touchpoint JSON (DESIGN §6).

use super::common::{number, scalar_text, str_field, traits_of};
use super::{InputMapping, RejectReason};
use crate::event::{ConsentInput, DropCounts, IdentCollector, Touchpoint};
use crate::normalize::Normalizer;
use crate::time::parse_rfc3339;
use serde_json::{Map, Value};

pub(super) fn parse(
    root: &Value,
    obj: &Map<String, Value>,
    mapping: &InputMapping,
    norm: &mut Normalizer,
    drops: &mut DropCounts,
) -> Result<Touchpoint, RejectReason> {
    let event_id = str_field(obj, "event_id")?.ok_or(RejectReason::MissingField("event_id"))?;
    if event_id.is_empty() {
        return Err(RejectReason::InvalidField("event_id"));
    }
    let ts_text = str_field(obj, "timestamp")?.ok_or(RejectReason::MissingField("timestamp"))?;
    let ts = parse_rfc3339(ts_text).ok_or(RejectReason::InvalidTimestamp("timestamp"))?;
    let source: crate::short::ShortStr = str_field(obj, "source")?.or(mapping.default_source.as_deref()).unwrap_or("unknown").into();
    let kind = str_field(obj, "type")?.unwrap_or("track");

    let mut ids = IdentCollector::default();
    match obj.get("identifiers") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for it in items {
                let o = it.as_object().ok_or(RejectReason::InvalidField("identifiers"))?;
                let ty = str_field(o, "type").map_err(|_| RejectReason::InvalidField("identifiers"))?;
                let ty = ty.ok_or(RejectReason::InvalidField("identifiers"))?;
                // A type the config does not declare is a schema or mapping
                // error: the whole event is rejected, never applied in part.
                if norm.config().type_by_name(ty).is_none() {
                    return Err(RejectReason::UnknownIdentifierType);
                }
                match o.get("value").and_then(scalar_text) {
                    Some(v) => ids.push_named(norm, drops, ty, &v),
                    None => drops.add(crate::normalize::DropReason::Empty),
                }
            }
        }
        Some(_) => return Err(RejectReason::InvalidField("identifiers")),
    }
    for (path, ty) in &mapping.identifiers {
        if let Some(v) = path.get(root).and_then(scalar_text) {
            ids.push_named(norm, drops, ty, &v);
        }
    }
    let idents = ids.finish(norm, drops);

    let mut traits = Vec::new();
    match obj.get("traits") {
        None | Some(Value::Null) | Some(Value::Object(_)) => {
            let skip: Vec<&str> = mapping.identifiers.iter().map(|(p, _)| p.last()).collect();
            traits_of(obj.get("traits"), &skip, &mut traits)
        }
        Some(_) => return Err(RejectReason::InvalidField("traits")),
    }
    for (path, name) in &mapping.traits {
        if let Some(v) = path.get(root).filter(|v| !v.is_null()) {
            traits.push((name.as_str().into(), v.to_string()));
        }
    }
    let props = match obj.get("properties") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m),
        Some(_) => return Err(RejectReason::InvalidField("properties")),
    };
    let revenue = props.and_then(|p| p.get("revenue")).and_then(number);
    let is_order = revenue.is_some() || kind == "order";

    let mut consent = Vec::new();
    match obj.get("consent") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for it in items {
                let o = it.as_object().ok_or(RejectReason::InvalidField("consent"))?;
                let purpose =
                    str_field(o, "purpose").ok().flatten().filter(|p| !p.is_empty()).ok_or(RejectReason::InvalidField("consent"))?;
                let granted = o.get("granted").and_then(Value::as_bool).ok_or(RejectReason::InvalidField("consent"))?;
                consent.push(ConsentInput {
                    purpose: purpose.to_string(),
                    granted,
                    policy_version: str_field(o, "policy_version").ok().flatten().map(str::to_string),
                    jurisdiction: str_field(o, "jurisdiction").ok().flatten().map(str::to_string),
                });
            }
        }
        Some(_) => return Err(RejectReason::InvalidField("consent")),
    }
    Ok(Touchpoint { event_id: event_id.into(), ts, source, idents, traits, revenue, is_order, consent })
}
