//! One conformance suite run against both stores.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use idgraph_store::{Batch, Cf, MemStore, RocksOptions, RocksStore, Store};
use proptest::prelude::*;
use std::collections::BTreeMap;

fn suite(s: &dyn Store) {
    assert_eq!(s.get(Cf::Idents, b"k").unwrap(), None);
    let mut b = Batch::default();
    b.put(Cf::Idents, b"a1", b"v1");
    b.put(Cf::Idents, b"a2", b"v2");
    b.put(Cf::Idents, b"b1", b"v3");
    b.put(Cf::Profiles, b"a1", b"p");
    s.write(b).unwrap();
    assert_eq!(s.get(Cf::Idents, b"a1").unwrap(), Some(b"v1".to_vec()));
    assert_eq!(s.get(Cf::Profiles, b"a1").unwrap(), Some(b"p".to_vec()), "families are separate");
    assert_eq!(s.get(Cf::Meta, b"a1").unwrap(), None);
    let got = s.multi_get(Cf::Idents, &[b"b1".to_vec(), b"zz".to_vec(), b"a1".to_vec()]).unwrap();
    assert_eq!(got, vec![Some(b"v3".to_vec()), None, Some(b"v1".to_vec())]);
    // The same values handed over in place, each with its key's position.
    let mut handed = Vec::new();
    s.multi_get_with(Cf::Idents, &[b"b1".to_vec(), b"zz".to_vec(), b"a1".to_vec(), b"b1".to_vec()], &mut |i, v| {
        handed.push((i, v.map(<[u8]>::to_vec)));
    })
    .unwrap();
    handed.sort();
    assert_eq!(handed, vec![(0, Some(b"v3".to_vec())), (1, None), (2, Some(b"v1".to_vec())), (3, Some(b"v3".to_vec()))]);
    // Keys that differ only past their 15th byte.
    let mut b = Batch::default();
    b.put(Cf::Profiles, b"0123456789abcdefY", b"y");
    b.put(Cf::Profiles, b"0123456789abcdefX", b"x");
    s.write(b).unwrap();
    let keys = [b"0123456789abcdefY".to_vec(), b"0123456789abcdefZ".to_vec(), b"0123456789abcdefX".to_vec()];
    assert_eq!(s.multi_get(Cf::Profiles, &keys).unwrap(), vec![Some(b"y".to_vec()), None, Some(b"x".to_vec())]);
    let mut seen = Vec::new();
    s.scan(Cf::Idents, b"a", &mut |k, v| {
        seen.push((k.to_vec(), v.to_vec()));
        true
    })
    .unwrap();
    assert_eq!(seen, vec![(b"a1".to_vec(), b"v1".to_vec()), (b"a2".to_vec(), b"v2".to_vec())]);
    let mut first = 0;
    s.scan(Cf::Idents, b"", &mut |_, _| {
        first += 1;
        false
    })
    .unwrap();
    assert_eq!(first, 1, "scan stops when told");
    let mut b = Batch::default();
    b.delete(Cf::Idents, b"a1");
    b.put(Cf::Idents, b"a2", b"v2b");
    s.write(b).unwrap();
    assert_eq!(s.get(Cf::Idents, b"a1").unwrap(), None);
    assert_eq!(s.get(Cf::Idents, b"a2").unwrap(), Some(b"v2b".to_vec()));
    // Prefix deletion comes before the batch's other writes, stays in its
    // family, and spares keys outside the prefix.
    let mut b = Batch::default();
    b.put(Cf::Idents, b"a\xFF", b"x");
    s.write(b).unwrap();
    let mut b = Batch::default();
    b.put(Cf::Idents, b"a3", b"v4");
    b.delete_prefix(Cf::Idents, b"a".to_vec());
    s.write(b).unwrap();
    assert_eq!(s.get(Cf::Idents, b"a2").unwrap(), None);
    assert_eq!(s.get(Cf::Idents, b"a\xFF").unwrap(), None);
    assert_eq!(s.get(Cf::Idents, b"a3").unwrap(), Some(b"v4".to_vec()), "written after the deletion");
    assert_eq!(s.get(Cf::Idents, b"b1").unwrap(), Some(b"v3".to_vec()));
    assert_eq!(s.get(Cf::Profiles, b"a1").unwrap(), Some(b"p".to_vec()));
    s.flush().unwrap();
}

#[test]
fn prefix_end_bounds_the_prefix() {
    assert_eq!(idgraph_store::prefix_end(b"a"), Some(b"b".to_vec()));
    assert_eq!(idgraph_store::prefix_end(&[0, 0xFF]), Some(vec![1]));
    assert_eq!(idgraph_store::prefix_end(&[0xFF, 0xFF]), None);
}

#[test]
fn mem_store_conforms() {
    suite(&MemStore::new());
}

#[test]
fn rocks_store_conforms_and_persists() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = RocksStore::open(dir.path(), &RocksOptions::default()).unwrap();
        suite(&s);
    }
    let s = RocksStore::open(dir.path(), &RocksOptions::default()).unwrap();
    assert_eq!(s.get(Cf::Idents, b"a3").unwrap(), Some(b"v4".to_vec()), "survives reopen");
    assert_eq!(s.get(Cf::Idents, b"a2").unwrap(), None, "the prefix deletion survives reopen");
    assert!(s.disk_bytes().unwrap() > 0);
}

#[test]
fn opening_a_locked_store_is_a_user_error() {
    let dir = tempfile::tempdir().unwrap();
    let _a = RocksStore::open(dir.path(), &RocksOptions::default()).unwrap();
    let e = RocksStore::open(dir.path(), &RocksOptions::default()).unwrap_err();
    assert!(e.is_user_error());
    assert!(e.to_string().contains("cannot open the state store"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    /// Both stores agree with a BTreeMap oracle on any sequence of batches.
    #[test]
    fn stores_match_an_oracle(batches in prop::collection::vec(prop::collection::vec((0u8..3, 0u8..16, prop::option::of(0u8..4)), 1..12), 1..8)) {
        let dir = tempfile::tempdir().unwrap();
        let rocks = RocksStore::open(dir.path(), &RocksOptions::default()).unwrap();
        let mem = MemStore::new();
        let mut oracle: BTreeMap<(u8, Vec<u8>), Vec<u8>> = BTreeMap::new();
        for ops in &batches {
            let mut b = Batch::default();
            for (cf, k, v) in ops {
                let key = vec![b'k', *k];
                match v {
                    Some(v) => { b.put(Cf::ALL[*cf as usize], key.clone(), vec![*v]); oracle.insert((*cf, key), vec![*v]); }
                    None => { b.delete(Cf::ALL[*cf as usize], key.clone()); oracle.remove(&(*cf, key)); }
                }
            }
            rocks.write(b.clone()).unwrap();
            mem.write(b).unwrap();
        }
        for s in [&rocks as &dyn Store, &mem] {
            for cf in 0u8..3 {
                let mut got = Vec::new();
                s.scan(Cf::ALL[cf as usize], b"k", &mut |k, v| { got.push((k.to_vec(), v.to_vec())); true }).unwrap();
                let want: Vec<_> = oracle.iter().filter(|((c, _), _)| *c == cf).map(|((_, k), v)| (k.clone(), v.clone())).collect();
                prop_assert_eq!(got, want);
            }
        }
    }
}
