//! `idgraph replay` / `profiles` / `lookup` / `explain` as a user runs them.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use idgraph_e2e::{idents, idgraph, ok, profiles, replay_and_profiles, stderr, write_lines};

fn seg(lines: &[&str]) -> Vec<String> {
    lines.iter().map(|s| s.to_string()).collect()
}

#[test]
fn segment_events_resolve_into_one_profile_with_normalised_identifiers() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.ndjson");
    write_lines(
        &input,
        &seg(&[
            r#"{"type":"page","messageId":"m1","timestamp":"2026-03-01T10:00:00Z","anonymousId":"a-1","channel":"web"}"#,
            r#"{"type":"identify","messageId":"m2","timestamp":"2026-03-01T10:01:00Z","anonymousId":"a-1","userId":"u1","channel":"web","traits":{"email":" Ann@Example.com ","phone":"+1 (415) 555-0100","first_name":"Ann"}}"#,
            r#"{"type":"track","event":"Order Completed","messageId":"m3","timestamp":"2026-03-01T10:02:00Z","anonymousId":"a-2","channel":"app","properties":{"revenue":42.5},"context":{"traits":{"email":"ann@example.com","phone":"415.555.0100"},"device":{"id":"dev-9"}}}"#,
            "this is not json",
            r#"{"type":"alias","messageId":"m4","timestamp":"2026-03-01T10:03:00Z","previousId":"a-3","userId":"u1"}"#,
            r#"{"type":"identify","messageId":"m5","timestamp":"2026-03-01T10:04:00Z","userId":"u1","traits":{"email":"ANN@EXAMPLE.COM","phone":"+14155550100"}}"#,
            r#"{"type":"track","timestamp":"2026-03-01T10:05:00Z","userId":"u1"}"#,
            r#"{"type":"identify","messageId":"m6","timestamp":"2026-03-01T10:06:00Z","userId":"null","anonymousId":"undefined","traits":{"email":"test@test.com"},"context":{"device":{"id":"0"}}}"#,
            r#"{"type":"track","messageId":"m7","timestamp":"2026-03-01T10:07:00Z","userId":"u1","anonymousId":"unknown","context":{"device":{"id":"00000000-0000-0000-0000-000000000000"}}}"#,
        ]),
    );
    let state = dir.path().join("state");
    let out = dir.path().join("out");
    let ps = replay_and_profiles("segment", &state, &out, &[&input]);
    assert_eq!(ps.len(), 1, "one person, one profile: {ps:?}");
    let p = &ps[0];
    assert_eq!(
        idents(p),
        vec![
            "anonymous_id:a-1",
            "anonymous_id:a-2",
            "anonymous_id:a-3",
            "device_id:dev-9",
            "email:ann@example.com",
            "phone:+14155550100",
            "user_id:u1"
        ]
    );
    assert_eq!(p["traits"]["first_name"], "Ann");
    assert_eq!(p["metrics"]["event_count"], 6, "m1..m5 and m7; m6 has no valid identifier");
    assert_eq!(p["metrics"]["revenue_total"], 42.5);
    assert_eq!(p["metrics"]["order_count"], 1);
    let text = serde_json::to_string(&ps).unwrap().to_lowercase();
    for blocked in ["\"null\"", "undefined", "test@test.com", "\"unknown\"", "00000000-0000"] {
        assert!(!text.contains(blocked), "blocked value {blocked} reached a profile");
    }

    // Rejects: file, line and reason; the run went on.
    let rejects: Vec<serde_json::Value> =
        std::fs::read_to_string(out.join("rejects.ndjson")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let lines: Vec<u64> = rejects.iter().map(|r| r["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, vec![4, 7, 8]);
    assert_eq!(rejects[0]["reason"], "invalid_json");
    assert_eq!(rejects[1]["reason"], "missing_field");
    assert_eq!(rejects[2]["reason"], "no_valid_identifier");
    assert!(rejects[0]["file"].as_str().unwrap().ends_with("events.ndjson"));
    assert_eq!(rejects[0]["raw"], "this is not json");

    // The other streams exist and are valid NDJSON.
    let lifecycle = std::fs::read_to_string(out.join("lifecycle.ndjson")).unwrap();
    assert!(lifecycle.lines().any(|l| l.contains("\"type\":\"created\"")));
    assert!(lifecycle.lines().any(|l| l.contains("\"type\":\"merged\"")), "a-2's profile merged into u1's");
    let snapshots = std::fs::read_to_string(out.join("profiles.ndjson")).unwrap();
    assert!(snapshots.lines().any(|l| l.contains("\"tombstone\":true")), "merged-away profile tombstoned");
    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["events"], 6);
    assert_eq!(summary["rejects"], 3);

    // lookup normalises its argument; explain shows the chain with evidence.
    let st = state.to_str().unwrap();
    let l: serde_json::Value = serde_json::from_str(&ok(&idgraph(&["lookup", "--state", st, "email: ANN@example.com"]))).unwrap();
    assert_eq!(l["profile_id"], p["profile_id"]);
    let e = ok(&idgraph(&["explain", "--state", st, "anonymous_id:a-3", "phone:415.555.0100"]));
    assert!(e.starts_with(&format!("profile {}", p["profile_id"].as_str().unwrap())), "{e}");
    assert!(e.contains("event m4") && e.contains(" -- "), "{e}");
    let unjoined = idgraph(&["explain", "--state", st, "email:nobody@example.com", "user_id:u1"]);
    assert_eq!(unjoined.status.code(), Some(1), "not found is exit code 1");
    assert!(stderr(&unjoined).contains("in no profile"));
    let miss = idgraph(&["lookup", "--state", st, "email:nobody@example.com"]);
    assert_eq!(miss.status.code(), Some(1));
    assert!(!stderr(&miss).contains("nobody"), "no PII in messages");
}

#[test]
fn canonical_events_and_resume_of_a_second_file() {
    let dir = tempfile::tempdir().unwrap();
    let f1 = dir.path().join("day1.ndjson");
    let f2 = dir.path().join("day2.ndjson");
    write_lines(&f1, &[
        r#"{"event_id":"e-1","type":"track","timestamp":"2026-03-01T10:00:00Z","source":"web","identifiers":[{"type":"email","value":"Ann@Example.com"},{"type":"anonymous_id","value":"a-1"}],"traits":{"first_name":"Ann"},"properties":{"revenue":42.5,"currency":"EUR"},"consent":[{"purpose":"email_marketing","granted":true,"policy_version":"2026-01","jurisdiction":"EU"}]}"#.to_string(),
    ]);
    write_lines(&f2, &[
        r#"{"event_id":"e-2","type":"track","timestamp":"2026-03-02T10:00:00Z","source":"pos","identifiers":[{"type":"email","value":"ann@example.com"},{"type":"loyalty_id","value":"L1"}],"consent":[{"purpose":"email_marketing","granted":false}]}"#.to_string(),
    ]);
    let state = dir.path().join("s");
    let out = dir.path().join("o");
    replay_and_profiles("canonical", &state, &out, &[&f1]);
    let ps = replay_and_profiles("canonical", &state, &out, &[&f1, &f2]);
    assert_eq!(ps.len(), 1);
    assert_eq!(ps[0]["metrics"]["event_count"], 2, "day 1 is not applied twice");
    assert_eq!(ps[0]["consent"]["email_marketing"]["granted"], false, "the later denial wins");
    assert_eq!(ps[0]["metrics"]["sources"]["pos"], 1);
    let consent = std::fs::read_to_string(out.join("consent.ndjson")).unwrap();
    assert_eq!(consent.lines().count(), 2, "grant then withdrawal: {consent}");
    assert!(consent.lines().all(|l| l.contains(ps[0]["profile_id"].as_str().unwrap())), "{consent}");
}

#[test]
fn config_errors_name_the_key_and_stop_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[state]\npartitons = 4\n").unwrap();
    let f = dir.path().join("e.ndjson");
    std::fs::write(&f, "").unwrap();
    let o_dir = dir.path().join("o");
    let args = ["replay", "--config", cfg.to_str().unwrap(), "--out", o_dir.to_str().unwrap(), f.to_str().unwrap()];
    let o = idgraph(&args);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("partitons"), "{}", stderr(&o));
    std::fs::write(&cfg, "[identity]\ndefault-region = \"Atlantis\"\n").unwrap();
    let o = idgraph(&args);
    assert!(stderr(&o).contains("identity.default-region"), "{}", stderr(&o));
    std::fs::write(&cfg, "[state]\npartitions = 4\n").unwrap();
    let o = idgraph_e2e::idgraph_env(&args[..], &[("IDGRAPH__STATE__PARTITIONS", "0")]);
    assert!(stderr(&o).contains("state.partitions"), "{}", stderr(&o));
}

#[test]
fn a_state_keeps_its_partition_count() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("e.ndjson");
    write_lines(&f, &[r#"{"event_id":"e","timestamp":"2026-03-01T10:00:00Z","identifiers":[{"type":"user_id","value":"u"}]}"#.to_string()]);
    let st = dir.path().join("s");
    let (s, o) = (st.to_str().unwrap(), dir.path().join("o"));
    ok(&idgraph_e2e::idgraph_env(
        &["replay", "--state", s, "--out", o.to_str().unwrap(), f.to_str().unwrap()],
        &[("IDGRAPH__STATE__PARTITIONS", "4")],
    ));
    let bad = idgraph_e2e::idgraph_env(
        &["replay", "--state", s, "--out", o.to_str().unwrap(), f.to_str().unwrap()],
        &[("IDGRAPH__STATE__PARTITIONS", "2")],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("4 partitions"), "{}", stderr(&bad));
    assert_eq!(profiles(&st).len(), 1);
}

#[test]
fn a_state_keeps_its_custom_identifier_types_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.ndjson");
    write_lines(
        &input,
        &seg(&[
            r#"{"event_id":"e1","type":"identify","timestamp":"2026-03-01T10:00:00Z","identifiers":[{"type":"email","value":"ann@example.com"},{"type":"member_no","value":"M12345678"}]}"#,
        ]),
    );
    let cfg = dir.path().join("idgraph.toml");
    std::fs::write(&cfg, "[identity.types.member_no]\npattern = \"M[0-9]{8}\"\n").unwrap();
    let (state, out) = (dir.path().join("state"), dir.path().join("out"));
    let s = state.to_str().unwrap();
    let replay = |config: &std::path::Path| {
        idgraph(&[
            "replay",
            "--config",
            config.to_str().unwrap(),
            "--format",
            "canonical",
            "--state",
            s,
            "--out",
            out.to_str().unwrap(),
            input.to_str().unwrap(),
        ])
    };
    ok(&replay(&cfg));
    // Queried without the config that wrote it, the state still names the type.
    let listed = ok(&idgraph(&["profiles", "--state", s]));
    assert!(listed.contains(r#"{"type":"member_no","value":"M12345678""#), "{listed}");
    let found = ok(&idgraph(&["lookup", "--state", s, "member_no:M12345678"]));
    assert!(found.contains("ann@example.com"), "{found}");
    // A config that would number it otherwise (a new type sorting first)
    // is refused at start, naming the key, and so is one that drops it.
    let renumbered = dir.path().join("renumbered.toml");
    std::fs::write(&renumbered, "[identity.types.account]\npattern = \"A[0-9]+\"\n[identity.types.member_no]\npattern = \"M[0-9]{8}\"\n")
        .unwrap();
    let o = replay(&renumbered);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("`identity.types.member_no`"), "{}", stderr(&o));
    let o = idgraph(&["profiles", "--config", renumbered.to_str().unwrap(), "--state", s]);
    assert!(!o.status.success() && stderr(&o).contains("`identity.types.member_no`"), "{}", stderr(&o));
    let dropped = dir.path().join("dropped.toml");
    std::fs::write(&dropped, "").unwrap();
    let o = replay(&dropped);
    assert!(!o.status.success() && stderr(&o).contains("keep it declared"), "{}", stderr(&o));
    // A type sorting after it is added.
    let added = dir.path().join("added.toml");
    std::fs::write(&added, "[identity.types.member_no]\npattern = \"M[0-9]{8}\"\n[identity.types.store_card]\npattern = \"S[0-9]+\"\n")
        .unwrap();
    ok(&replay(&added));
}
