//! Canonical touchpoint JSON (DESIGN §6).

use super::common::{number, object_field, scalar_text, str_field, traits_of};
use super::json::Object;
use super::{InputMapping, RejectReason};
use crate::event::{ConsentInput, DropCounts, IdentCollector, Touchpoint};
use crate::normalize::Normalizer;
use crate::time::parse_rfc3339;

pub(super) fn parse(
    obj: &Object<'_, '_>,
    mapping: &InputMapping,
    norm: &mut Normalizer,
    drops: &mut DropCounts,
) -> Result<Touchpoint, RejectReason> {
    let event_id = str_field(obj, "event_id")?.ok_or(RejectReason::MissingField("event_id"))?;
    if event_id.is_empty() {
        return Err(RejectReason::InvalidField("event_id"));
    }
    let ts_text = str_field(obj, "timestamp")?.ok_or(RejectReason::MissingField("timestamp"))?;
    let ts = parse_rfc3339(&ts_text).ok_or(RejectReason::InvalidTimestamp("timestamp"))?;
    let source: crate::short::ShortStr = match str_field(obj, "source")? {
        Some(s) => s.as_ref().into(),
        None => mapping.default_source.as_deref().unwrap_or("unknown").into(),
    };
    let kind = str_field(obj, "type")?;
    let kind = kind.as_deref().unwrap_or("track");

    let mut ids = IdentCollector::default();
    if let Some(v) = obj.get("identifiers").filter(|v| !v.is_null()) {
        for it in v.array().ok_or(RejectReason::InvalidField("identifiers"))? {
            let o = it.object().ok_or(RejectReason::InvalidField("identifiers"))?;
            let ty = str_field(&o, "type").map_err(|_| RejectReason::InvalidField("identifiers"))?;
            let ty = ty.ok_or(RejectReason::InvalidField("identifiers"))?;
            // A type the config does not declare is a schema or mapping
            // error: the whole event is rejected, never applied in part.
            if norm.config().type_by_name(&ty).is_none() {
                return Err(RejectReason::UnknownIdentifierType);
            }
            match o.get("value").and_then(scalar_text) {
                Some(v) => ids.push_named(norm, drops, &ty, &v),
                None => drops.add(crate::normalize::DropReason::Empty),
            }
        }
    }
    for (path, ty) in &mapping.identifiers {
        if let Some(v) = path.get(obj).and_then(scalar_text) {
            ids.push_named(norm, drops, ty, &v);
        }
    }
    let idents = ids.finish(norm, drops);

    let mut traits = Vec::new();
    let skip: Vec<&str> = mapping.identifiers.iter().map(|(p, _)| p.last()).collect();
    traits_of(object_field(obj.get("traits"), "traits")?.as_ref(), &skip, &mut traits);
    for (path, name) in &mapping.traits {
        if let Some(v) = path.get(obj).filter(|v| !v.is_null()) {
            traits.push((name.as_str().into(), v.to_json().into()));
        }
    }
    let props = object_field(obj.get("properties"), "properties")?;
    let revenue = props.as_ref().and_then(|p| p.get("revenue")).and_then(number);
    let is_order = revenue.is_some() || kind == "order";

    let mut consent = Vec::new();
    if let Some(v) = obj.get("consent").filter(|v| !v.is_null()) {
        for it in v.array().ok_or(RejectReason::InvalidField("consent"))? {
            let o = it.object().ok_or(RejectReason::InvalidField("consent"))?;
            let purpose = str_field(&o, "purpose").ok().flatten().filter(|p| !p.is_empty()).ok_or(RejectReason::InvalidField("consent"))?;
            let granted = o.get("granted").and_then(|g| g.bool()).ok_or(RejectReason::InvalidField("consent"))?;
            consent.push(ConsentInput {
                purpose: purpose.into_owned(),
                granted,
                policy_version: str_field(&o, "policy_version").ok().flatten().map(|s| s.into_owned()),
                jurisdiction: str_field(&o, "jurisdiction").ok().flatten().map(|s| s.into_owned()),
            });
        }
    }
    Ok(Touchpoint { event_id: event_id.as_ref().into(), ts, source, idents, traits, revenue, is_order, consent })
}
