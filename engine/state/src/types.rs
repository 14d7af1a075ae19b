//! The custom identifier types a state holds. Identifier keys carry their
//! type as a number; custom types from config are numbered in name order
//! (`CoreConfig::build`), so the state records each number's name and
//! refuses a config that would change it (ADR 0001).

use crate::layout::{get_meta, put_meta, StateError};
use idgraph_core::config::CoreConfig;
use idgraph_store::{Batch, Store};

/// The custom identifier types a state recorded: (number, name), in
/// number order. Identifier keys carry the number, so it must keep its
/// name for the life of the state.
pub fn recorded_types(store: &dyn Store) -> Result<Vec<(u8, String)>, StateError> {
    Ok(get_meta(store, "types")?.unwrap_or_default())
}

/// Checks a config's custom identifier types against the ones the state
/// recorded and, with `record`, records the new ones; returns what the
/// state holds afterwards. Custom types are numbered in name order
/// (`CoreConfig::build`), so a type added since the state was written must
/// sort after every recorded one, and a recorded type must stay declared:
/// otherwise the state's identifiers would change type.
pub fn check_types(store: &dyn Store, core: &CoreConfig, record: bool) -> Result<Vec<(u8, String)>, StateError> {
    let mut recorded = recorded_types(store)?;
    let declared: Vec<(u8, &str)> = core.custom_types().map(|(t, name)| (t.0, name)).collect();
    for (n, name) in &recorded {
        let key = format!("identity.types.{name}");
        match declared.iter().find(|(_, d)| d == name) {
            Some((m, _)) if m == n => {}
            Some((m, _)) => {
                return Err(StateError::Types {
                    key,
                    reason: format!(
                        "the state holds this custom type as number {n}, this config numbers it {m}: custom types are numbered in name order, so a type added to a state must sort after the ones it holds (rename the new type, or replay into a new state dir)"
                    ),
                })
            }
            None if record => {
                return Err(StateError::Types {
                    key,
                    reason: "the state holds identifiers of this custom type; keep it declared (with its `pattern`)".into(),
                })
            }
            None => {}
        }
    }
    // A declared type on a number the state holds under another name (a
    // config that lacks some of the state's types, for a query).
    for (m, name) in &declared {
        if let Some((_, held)) = recorded.iter().find(|(n, held)| n == m && held != name) {
            return Err(StateError::Types {
                key: format!("identity.types.{name}"),
                reason: format!(
                    "this config numbers it {m}, which the state holds as the custom type `{held}`: declare the state's custom types too"
                ),
            });
        }
    }
    let new: Vec<(u8, String)> =
        declared.iter().filter(|(n, _)| !recorded.iter().any(|(m, _)| m == n)).map(|(n, name)| (*n, name.to_string())).collect();
    if record && !new.is_empty() {
        recorded.extend(new);
        recorded.sort();
        let mut b = Batch::default();
        put_meta(&mut b, "types", &recorded);
        store.write(b)?;
    }
    Ok(recorded)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use idgraph_core::config::{IdentitySection, TraitsSection, TypeSection};
    use idgraph_store::MemStore;

    /// A core config declaring these custom types.
    fn with_types(names: &[&str]) -> CoreConfig {
        let mut id = IdentitySection::default();
        for n in names {
            id.types.insert(n.to_string(), TypeSection { pattern: Some("[A-Z0-9]+".into()), ..Default::default() });
        }
        CoreConfig::build(&id, &TraitsSection::default()).unwrap()
    }

    #[test]
    fn custom_types_keep_their_numbers_for_the_life_of_a_state() {
        let store = MemStore::new();
        let first = check_types(&store, &with_types(&["member_no"]), true).unwrap();
        assert_eq!(first, vec![(32, "member_no".to_string())]);
        // A type sorting after the recorded one is added and recorded.
        assert_eq!(check_types(&store, &with_types(&["member_no", "store_card"]), true).unwrap().len(), 2);
        assert_eq!(recorded_types(&store).unwrap(), vec![(32, "member_no".to_string()), (33, "store_card".to_string())]);
        // One sorting first would renumber the recorded ones.
        let e = check_types(&store, &with_types(&["account", "member_no", "store_card"]), true).unwrap_err();
        assert!(e.to_string().contains("`identity.types.member_no`") && e.to_string().contains("number 32"), "{e}");
        // Dropping a recorded type is refused where the state is written...
        let e = check_types(&store, &with_types(&["member_no"]), true).unwrap_err();
        assert!(e.to_string().contains("`identity.types.store_card`") && e.to_string().contains("keep it declared"), "{e}");
        // ...and allowed for a query, which names it from the record.
        let mut core = with_types(&[]);
        let held = check_types(&store, &core, false).unwrap();
        core.adopt_type_names(&held);
        assert_eq!(core.type_name(idgraph_core::ident::IdentType(33)), "store_card");
        assert_eq!(recorded_types(&store).unwrap().len(), 2, "a query records nothing");
        // A query config with a type of its own on a recorded number.
        let e = check_types(&store, &with_types(&["loyalty_card"]), false).unwrap_err();
        assert!(e.to_string().contains("`identity.types.loyalty_card`") && e.to_string().contains("`member_no`"), "{e}");
    }
}
