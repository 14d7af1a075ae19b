//! Segment / RudderStack spec (identify, track, page, screen, alias, group).
//!
//! Field mapping (DESIGN §6): `messageId`→event_id; `timestamp` (else
//! `originalTimestamp`)→timestamp; `anonymousId`→anonymous_id;
//! `userId`→user_id; alias `previousId`→anonymous_id; `traits.email`,
//! `context.traits.email`→email, likewise `phone`;
//! `context.device.advertisingId`→advertising_id; `context.device.id`→device_id;
//! `properties.loyalty_id`, `traits.loyalty_id`, `context.traits.loyalty_id`→loyalty_id;
//! `properties.revenue`→revenue; `context.consent.categoryPreferences`→consent.
//! Source is `channel`, else the input's default source, else `segment`.
//! Traits are `traits` (not for `group`, whose traits describe the group) and
//! `context.traits`, less the fields mapped to identifiers (built in or by
//! config).

use super::common::{number, object_field, scalar_text, str_value, traits_of};
use super::json::{Object, Raw};
use super::{InputMapping, RejectReason};
use crate::event::{ConsentInput, DropCounts, IdentCollector, Touchpoint};
use crate::ident::IdentType;
use crate::normalize::Normalizer;
use crate::time::parse_rfc3339;

const IDENTIFIER_TRAITS: [&str; 3] = ["email", "phone", "loyalty_id"];

pub(super) fn parse(
    obj: &Object<'_, '_>,
    mapping: &InputMapping,
    norm: &mut Normalizer,
    drops: &mut DropCounts,
) -> Result<Touchpoint, RejectReason> {
    // The top-level fields in one pass.
    let [kind, message_id, timestamp, original_ts, channel, traits, context, properties, user_id, anonymous_id, previous_id, event] = obj
        .get_all([
            "type",
            "messageId",
            "timestamp",
            "originalTimestamp",
            "channel",
            "traits",
            "context",
            "properties",
            "userId",
            "anonymousId",
            "previousId",
            "event",
        ]);
    let kind = str_value(kind, "type")?.ok_or(RejectReason::MissingField("type"))?;
    let kind = kind.as_ref();
    if !matches!(kind, "identify" | "track" | "page" | "screen" | "alias" | "group") {
        return Err(RejectReason::UnsupportedType);
    }
    let event_id = str_value(message_id, "messageId")?.filter(|s| !s.is_empty()).ok_or(RejectReason::MissingField("messageId"))?;
    let (ts_field, ts_text) = match str_value(timestamp, "timestamp")? {
        Some(t) => ("timestamp", t),
        None => ("originalTimestamp", str_value(original_ts, "originalTimestamp")?.ok_or(RejectReason::MissingField("timestamp"))?),
    };
    let ts = parse_rfc3339(&ts_text).ok_or(RejectReason::InvalidTimestamp(ts_field))?;
    let source: crate::short::ShortStr = match str_value(channel, "channel")? {
        Some(c) => c.as_ref().into(),
        None => mapping.default_source.as_deref().unwrap_or("segment").into(),
    };

    // A `group` call's traits describe the group (a company), not the person.
    let traits_obj = if kind == "group" { None } else { object_field(traits, "traits")? };
    let context = object_field(context, "context")?;
    let [ctx_traits, device, ctx_consent] = context.as_ref().map_or([None; 3], |c| c.get_all(["traits", "device", "consent"]));
    let ctx_traits = object_field(ctx_traits, "context.traits")?;
    let device = object_field(device, "context.device")?;
    let props = object_field(properties, "properties")?;

    let mut ids = IdentCollector::default();
    let mut push = |ty: IdentType, v: Option<Raw<'_, '_>>, ids: &mut IdentCollector| {
        if let Some(v) = v {
            match scalar_text(v) {
                Some(s) => ids.push(norm, drops, ty, &s),
                None if v.is_null() => {}
                None => drops.add(crate::normalize::DropReason::Empty),
            }
        }
    };
    push(IdentType::USER_ID, user_id, &mut ids);
    push(IdentType::ANONYMOUS_ID, anonymous_id, &mut ids);
    if kind == "alias" {
        push(IdentType::ANONYMOUS_ID, previous_id, &mut ids);
    }
    for t in [&traits_obj, &ctx_traits].into_iter().flatten() {
        let [email, phone, loyalty_id] = t.get_all(IDENTIFIER_TRAITS);
        push(IdentType::EMAIL, email, &mut ids);
        push(IdentType::PHONE, phone, &mut ids);
        push(IdentType::LOYALTY_ID, loyalty_id, &mut ids);
    }
    if let Some(p) = &props {
        push(IdentType::LOYALTY_ID, p.get("loyalty_id"), &mut ids);
    }
    if let Some(d) = &device {
        let [advertising_id, id] = d.get_all(["advertisingId", "id"]);
        push(IdentType::ADVERTISING_ID, advertising_id, &mut ids);
        push(IdentType::DEVICE_ID, id, &mut ids);
    }
    for (path, ty) in &mapping.identifiers {
        if let Some(v) = path.get(obj).and_then(scalar_text) {
            ids.push_named(norm, drops, ty, &v);
        }
    }
    let idents = ids.finish(norm, drops);

    // Fields mapped to identifiers by config are not traits either.
    let mut skip: Vec<&str> = IDENTIFIER_TRAITS.to_vec();
    skip.extend(mapping.identifiers.iter().map(|(p, _)| p.last()));
    let mut traits = Vec::new();
    traits_of(ctx_traits.as_ref(), &skip, &mut traits);
    traits_of(traits_obj.as_ref(), &skip, &mut traits);
    for (path, name) in &mapping.traits {
        if let Some(v) = path.get(obj).filter(|v| !v.is_null()) {
            traits.push((name.as_str().into(), v.to_json().into()));
        }
    }
    let revenue = props.as_ref().and_then(|p| p.get("revenue")).and_then(number);
    let is_order = revenue.is_some() || (kind == "track" && str_value(event, "event").ok().flatten().as_deref() == Some("Order Completed"));

    let mut consent = Vec::new();
    let prefs = ctx_consent.and_then(|c| c.object()).and_then(|c| c.get("categoryPreferences"));
    if let Some(p) = prefs.filter(|p| !p.is_null()) {
        let m = p.object().ok_or(RejectReason::InvalidField("context.consent.categoryPreferences"))?;
        for (purpose, g) in m.sorted() {
            let granted = g.bool().ok_or(RejectReason::InvalidField("context.consent.categoryPreferences"))?;
            consent.push(ConsentInput { purpose: purpose.to_string(), granted, policy_version: None, jurisdiction: None });
        }
    }
    Ok(Touchpoint { event_id: event_id.as_ref().into(), ts, source, idents, traits, revenue, is_order, consent })
}

#[cfg(test)]
mod tests {
    use crate::config::CoreConfig;
    use crate::ident::IdentType;
    use crate::input::{Format, InputMapping, Parser, RejectReason};
    use crate::normalize::Normalizer;
    use std::sync::Arc;

    fn parser(f: Format) -> Parser {
        Parser::new(f, InputMapping::default(), Normalizer::new(Arc::new(CoreConfig::default())))
    }

    #[test]
    fn segment_identify_maps_the_documented_fields() {
        let mut p = parser(Format::Segment);
        let line =
            br#"{"type":"identify","messageId":"m1","timestamp":"2026-03-01T10:00:00Z","userId":"u1","anonymousId":"A-1","channel":"web",
          "traits":{"email":" Ann@Example.com","phone":"415.555.0100","first_name":"Ann","loyalty_id":"L9"},
          "context":{"device":{"id":"dev-1","advertisingId":"6D92078A-8246-4BA4-AE5B-76104861E7DC"},
                     "consent":{"categoryPreferences":{"email_marketing":true,"ads":false}}}}"#;
        let ev = p.parse(line).unwrap();
        let types: Vec<IdentType> = ev.idents.iter().map(|k| k.ty()).collect();
        assert_eq!(
            types,
            vec![
                IdentType::USER_ID,
                IdentType::LOYALTY_ID,
                IdentType::EMAIL,
                IdentType::PHONE,
                IdentType::ADVERTISING_ID,
                IdentType::DEVICE_ID,
                IdentType::ANONYMOUS_ID
            ]
        );
        assert_eq!(ev.idents[2].value(), "ann@example.com");
        assert_eq!(ev.idents[3].value(), "+14155550100");
        assert_eq!(ev.traits, vec![("first_name".into(), "\"Ann\"".into())]);
        assert_eq!(ev.source, "web");
        assert_eq!(ev.consent.len(), 2);
    }

    #[test]
    fn segment_alias_track_and_page() {
        let mut p = parser(Format::Segment);
        let ev =
            p.parse(br#"{"type":"alias","messageId":"m2","timestamp":"2026-03-01T10:00:00Z","userId":"u1","previousId":"a-9"}"#).unwrap();
        assert_eq!(ev.idents.len(), 2);
        let ev = p
            .parse(br#"{"type":"track","event":"Order Completed","messageId":"m3","timestamp":"2026-03-01T10:00:00Z","anonymousId":"a-9","properties":{"revenue":"12.5","loyalty_id":"L1"},"context":{"traits":{"email":"b@c.de"}}}"#)
            .unwrap();
        assert_eq!(ev.revenue, Some(12.5));
        assert!(ev.is_order);
        assert_eq!(ev.idents.len(), 3);
        let ev = p.parse(br#"{"type":"page","messageId":"m4","originalTimestamp":"2026-03-01T10:00:00Z","anonymousId":"a-9"}"#).unwrap();
        assert!(!ev.is_order);
    }

    #[test]
    fn group_traits_and_mapped_identifiers_are_not_person_traits() {
        let mut mapping = InputMapping::default();
        mapping.identifiers.push((crate::input::FieldPath::parse("context.traits.member_no").unwrap(), "user_id".into()));
        let mut p = Parser::new(Format::Segment, mapping, Normalizer::new(Arc::new(CoreConfig::default())));
        let ev = p
            .parse(br#"{"type":"group","messageId":"g","timestamp":"2026-03-01T10:00:00Z","userId":"u1","groupId":"acme","traits":{"name":"Acme","email":"billing@acme.com"}}"#)
            .unwrap();
        assert_eq!(ev.idents.len(), 1, "the group's email is not the person's");
        assert!(ev.traits.is_empty());
        let ev = p
            .parse(br#"{"type":"track","messageId":"t","timestamp":"2026-03-01T10:00:00Z","context":{"traits":{"member_no":"M1","plan":"pro"}}}"#)
            .unwrap();
        assert_eq!(ev.idents[0].value(), "M1");
        assert_eq!(ev.traits, vec![("plan".into(), "\"pro\"".into())]);
    }

    #[test]
    fn segment_rejects_with_reasons() {
        let mut p = parser(Format::Segment);
        assert_eq!(
            p.parse(br#"{"type":"bogus","messageId":"m","timestamp":"2026-03-01T10:00:00Z","userId":"u"}"#),
            Err(RejectReason::UnsupportedType)
        );
        assert_eq!(
            p.parse(br#"{"type":"track","timestamp":"2026-03-01T10:00:00Z","userId":"u"}"#),
            Err(RejectReason::MissingField("messageId"))
        );
        assert_eq!(
            p.parse(br#"{"type":"track","messageId":"m","timestamp":"yesterday","userId":"u"}"#),
            Err(RejectReason::InvalidTimestamp("timestamp"))
        );
        assert_eq!(
            p.parse(br#"{"type":"track","messageId":"m","timestamp":"2026-03-01T10:00:00Z","userId":"null"}"#),
            Err(RejectReason::NoIdentifiers)
        );
        assert!(matches!(p.parse(br#"{"type":"track""#), Err(RejectReason::InvalidJson { .. })));
        assert_eq!(p.parse(b"[1]"), Err(RejectReason::NotAnObject));
        assert_eq!(p.drops.iter().collect::<Vec<_>>(), vec![("blocked", 1)]);
    }

    #[test]
    fn canonical_example_from_the_design() {
        let mut p = parser(Format::Canonical);
        let ev = p
            .parse(
                br#"{"event_id": "e-1", "type": "track", "timestamp": "2026-03-01T10:00:00Z", "source": "web",
               "identifiers": [{"type": "email", "value": "Ann@Example.com"}, {"type": "anonymous_id", "value": "a-1"}],
               "traits": {"first_name": "Ann"}, "properties": {"revenue": 42.5, "currency": "EUR"},
               "consent": [{"purpose": "email_marketing", "granted": true, "policy_version": "2026-01", "jurisdiction": "EU"}]}"#,
            )
            .unwrap();
        assert_eq!(ev.idents.len(), 2);
        assert_eq!(ev.revenue, Some(42.5));
        assert_eq!(ev.consent[0].jurisdiction.as_deref(), Some("EU"));
        let e = p
            .parse(br#"{"event_id":"e","timestamp":"2026-03-01T10:00:00Z","identifiers":[{"type":"shoe_size","value":"9"}]}"#)
            .unwrap_err();
        assert_eq!(e, RejectReason::UnknownIdentifierType);
        let e = p
            .parse(br#"{"event_id":"e","timestamp":"2026-03-01T10:00:00Z","identifiers":[{"type":"email","value":"a@b.co"},{"type":"shoe_size","value":"9"}]}"#)
            .unwrap_err();
        assert_eq!(e.code(), "unknown_identifier_type");
    }
}
