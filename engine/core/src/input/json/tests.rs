//! Every reading and every refusal against serde_json's.

use super::*;
use proptest::prelude::*;
use serde_json::Value;

/// Every reading of `text` against the tree's.
fn agrees(text: &str) {
    let tree: Result<Value, _> = serde_json::from_str(text);
    let doc = document(text.as_bytes());
    match (&tree, &doc) {
        (Ok(t), Ok(d)) => {
            if let Some(obj) = d.object() {
                deep_agrees(t, Raw { doc: d, at: 0 });
                assert!(obj.get("\u{0}none").is_none());
            } else {
                assert!(!t.is_object());
            }
        }
        (Err(e), Ok(_)) => panic!("accepted what the tree refuses ({e}): {text:?}"),
        (Ok(_), Err(e)) => panic!("refused what the tree accepts ({e:?}): {text:?}"),
        (Err(e), Err(d)) => assert_eq!((d.line, d.column), (e.line(), e.column()), "{text:?}"),
    }
}

fn deep_agrees(t: &Value, r: Raw<'_, '_>) {
    assert_eq!(r.to_json(), t.to_string());
    match t {
        Value::Object(m) => {
            let o = r.object().unwrap();
            let sorted = o.sorted();
            assert_eq!(sorted.iter().map(|(k, _)| k.as_ref()).collect::<Vec<_>>(), m.keys().map(String::as_str).collect::<Vec<_>>());
            for (k, v) in m {
                deep_agrees(v, o.get(k).unwrap());
            }
        }
        Value::Array(a) => {
            let items = r.array().unwrap();
            assert_eq!(items.len(), a.len());
            for (v, i) in a.iter().zip(items) {
                deep_agrees(v, i);
            }
        }
        Value::String(s) => assert_eq!(r.str().unwrap(), s.as_str()),
        Value::Bool(b) => assert_eq!(r.bool(), Some(*b)),
        Value::Null => assert!(r.is_null()),
        Value::Number(n) => assert_eq!(r.number().unwrap(), *n),
    }
}

#[test]
fn readings_equal_the_tree() {
    let text = r#" {"b": 1, "a": {"y": [1, 2.50, "x\"y", {}], "x": null}, "b": -0, "s": "caf\u00e9", "t": true, "n": 1e2, "e": [] } "#;
    agrees(text);
    let d = document(text.as_bytes()).unwrap();
    let obj = d.object().unwrap();
    assert_eq!(obj.get("b").unwrap().number().unwrap().to_string(), "-0.0", "the last of a repeated key");
    assert_eq!(obj.get("s").unwrap().str().unwrap(), "café");
    assert!(obj.get("missing").is_none());
    assert!(obj.get("s").unwrap().object().is_none());
    let all = obj.get_all(["b", "missing", "s", "a"]);
    for (v, name) in all.iter().zip(["b", "missing", "s", "a"]) {
        assert_eq!(v.map(|r| r.to_json()), obj.get(name).map(|r| r.to_json()), "{name}");
    }
    let d = document(r#"{"e\u006dail":"a@b.co"}"#.as_bytes()).unwrap();
    assert!(d.object().unwrap().get_all(["email"])[0].is_some(), "escaped keys too");
    assert_eq!(d.object().unwrap().get("email").unwrap().str().unwrap(), "a@b.co", "keys match unescaped");
    // Many keys, repeated, in falling order.
    let big = format!("{{{}}}", (0..3000).rev().map(|i| format!("\"k{}\":{i}", i % 1000)).collect::<Vec<_>>().join(","));
    agrees(&big);
}

#[test]
fn refusals_are_serde_jsons() {
    let e = document(b"{\"a\":1,\n\"b\":}").unwrap_err();
    assert_eq!((e.line, e.what), (2, "syntax error"));
    assert_eq!(document(b"{\"a\":1").unwrap_err().what, "unexpected end");
    for bad in [&b"{\"a\":\"\xff\"}"[..], b"x\"\xff\"", b"[\"\n\"]", b"\"\\u0g00\""] {
        let (e, d) = (serde_json::from_slice::<Value>(bad).unwrap_err(), document(bad).unwrap_err());
        assert_eq!((d.line, d.column), (e.line(), e.column()), "{bad:?}");
    }
    for n in ["1e400", "-1e400", &"9".repeat(400), "[1.5e309]"] {
        assert!(document(n.as_bytes()).is_err(), "out of the range of f64: {n}");
        agrees(n);
    }
    for n in ["1e-400", "18446744073709551616", "-9223372036854775809", "0.1e308"] {
        agrees(n);
        assert!(document(n.as_bytes()).is_ok(), "{n}");
    }
    assert!(document(b" [1]").unwrap().object().is_none(), "not an object");
    for bad in [
        "{} x",
        "[1,]",
        "{\"a\":1,}",
        "{\"a\" 1}",
        "{1:2}",
        "01",
        "1.",
        "-",
        "1e",
        "tru",
        "nulls",
        "\"a\tb\"",
        r#""\x""#,
        r#""\ud800""#,
        r#""\udc00x""#,
        r#""\ud800\u0041""#,
        "",
    ] {
        assert!(document(bad.as_bytes()).is_err(), "{bad:?}");
        agrees(bad);
    }
    let deep = "[".repeat(200) + &"]".repeat(200);
    assert!(document(deep.as_bytes()).is_err(), "nesting limit");
    for depth in [127, 128] {
        agrees(&("[".repeat(depth) + &"]".repeat(depth)));
    }
    agrees(r#"{"a":"\\ud800","b":"\ud83d\ude00","c":"\/\b\f\n\r\t"}"#);
}

/// A JSON-ish text: valid documents, then bytes of them dropped,
/// repeated or swapped.
fn jsonish() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        Just("true".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:e}")),
        (0u32..400, "-?").prop_map(|(e, sign)| format!("{sign}1.5e{e}")),
        "[a-z\\\\\"\u{e9}\u{1F600} ]{0,6}".prop_map(|s| format!("{s:?}")),
        Just(r#""\u00e9\ud83d\ude00""#.to_string()),
    ];
    let tree = leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec(("[abc]{1,2}", inner), 0..4)
                .prop_map(|v| format!("{{ {} }}", v.iter().map(|(k, v)| format!("{k:?} : {v}")).collect::<Vec<_>>().join(" , "))),
        ]
    });
    (tree, any::<prop::sample::Index>(), 0u8..4).prop_map(|(t, at, how)| {
        let mut b = t.into_bytes();
        if b.is_empty() {
            return String::new();
        }
        let i = at.index(b.len());
        match how {
            0 => {}
            1 => {
                b.remove(i);
            }
            2 => b.insert(i, b[i]),
            _ => {
                let last = b.len() - 1;
                b.swap(i, last);
            }
        }
        String::from_utf8_lossy(&b).into_owned()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]
    #[test]
    fn every_reading_agrees_with_serde_json(text in jsonish()) {
        agrees(&text);
    }
}
