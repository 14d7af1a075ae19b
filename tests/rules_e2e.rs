//! The merge rules end to end: kiosks, family emails, merges across devices.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use idgraph_e2e::{idents, replay_and_profiles, replay_env_and_profiles, write_lines};

fn identify(id: usize, ts_min: usize, anon: &str, user: &str, email: &str) -> String {
    format!(
        r#"{{"type":"identify","messageId":"m{id}","timestamp":"2026-03-01T10:{:02}:{:02}Z","anonymousId":"{anon}","userId":"{user}","traits":{{"email":"{email}"}}}}"#,
        ts_min / 60,
        ts_min % 60
    )
}

#[test]
fn thirty_people_on_one_store_kiosk_stay_thirty_profiles() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("kiosk.ndjson");
    let lines: Vec<String> =
        (0..30).map(|i| identify(i, i, "kiosk-browser", &format!("shopper-{i}"), &format!("s{i}@example.com"))).collect();
    write_lines(&f, &lines);
    let (state, out) = (dir.path().join("s"), dir.path().join("o"));
    let ps = replay_and_profiles("segment", &state, &out, &[&f]);
    assert_eq!(ps.len(), 30);
    for p in &ps {
        let ids = idents(p);
        assert_eq!(ids.iter().filter(|i| i.starts_with("user_id:")).count(), 1, "{ids:?}");
        assert!(!ids.contains(&"anonymous_id:kiosk-browser".to_string()), "the kiosk is shared and detached: {ids:?}");
    }
    let lc = std::fs::read_to_string(out.join("lifecycle.ndjson")).unwrap();
    assert_eq!(lc.lines().filter(|l| l.contains("\"identifier_shared\"")).count(), 1);
    assert!(lc.lines().any(|l| l.contains("\"conflict\"") && l.contains("max_per_profile:user_id")));
}

#[test]
fn kiosk_shoppers_keep_their_own_identifiers_whatever_the_batching() {
    // Each sign-in on the kiosk browser is followed by anonymous browsing on
    // it. The sign-ins' identifiers attach through the kiosk cookie, which
    // turns shared and is detached: every shopper must keep their login and
    // their email together, however the events are cut into batches and
    // partitions.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("kiosk.ndjson");
    let track = |i: usize, k: usize, ts_min: usize| {
        format!(
            r#"{{"type":"track","event":"Viewed","messageId":"t{i}-{k}","timestamp":"2026-03-01T10:{:02}:{:02}Z","anonymousId":"kiosk-browser"}}"#,
            ts_min / 60,
            ts_min % 60
        )
    };
    let mut lines = Vec::new();
    for i in 0..30 {
        lines.push(identify(i, 3 * i, "kiosk-browser", &format!("shopper-{i}"), &format!("s{i}@example.com")));
        for k in 0..i % 3 {
            lines.push(track(i, k, 3 * i + 1 + k));
        }
    }
    write_lines(&f, &lines);
    for (batch, parts) in [("16384", "1"), ("16384", "4"), ("3", "4"), ("1", "1")] {
        let (state, out) = (dir.path().join(format!("s-{batch}-{parts}")), dir.path().join(format!("o-{batch}-{parts}")));
        let env = [("IDGRAPH__REPLAY__BATCH_SIZE", batch), ("IDGRAPH__STATE__PARTITIONS", parts)];
        let ps = replay_env_and_profiles("segment", &state, &out, &[&f], &env);
        assert_eq!(ps.len(), 30, "batch {batch}, P={parts}: {:?}", ps.iter().map(idents).collect::<Vec<_>>());
        for p in &ps {
            let ids = idents(p);
            let user = ids.iter().find_map(|i| i.strip_prefix("user_id:shopper-")).unwrap_or_else(|| panic!("no login: {ids:?}"));
            assert_eq!(ids, vec![format!("email:s{user}@example.com"), format!("user_id:shopper-{user}")], "batch {batch}, P={parts}");
        }
    }
}

#[test]
fn a_family_email_does_not_join_people_with_their_own_logins() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("family.ndjson");
    write_lines(
        &f,
        &[
            identify(1, 1, "a-mum", "mum", "family@home.example"),
            identify(2, 2, "a-dad", "dad", "family@home.example"),
            identify(3, 3, "a-mum", "mum", "mum@example.com"),
        ],
    );
    let ps = replay_and_profiles("segment", &dir.path().join("s"), &dir.path().join("o"), &[&f]);
    assert_eq!(ps.len(), 2, "{ps:?}");
    let users: Vec<Vec<String>> = ps.iter().map(|p| idents(p).into_iter().filter(|i| i.starts_with("user_id:")).collect()).collect();
    assert!(users.iter().all(|u| u.len() == 1));
}

#[test]
fn anonymous_browsing_on_two_devices_merges_at_sign_in() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("journey.ndjson");
    let page = |id: usize, m: usize, anon: &str| {
        format!(r#"{{"type":"page","messageId":"p{id}","timestamp":"2026-03-01T11:{m:02}:00Z","anonymousId":"{anon}"}}"#)
    };
    write_lines(
        &f,
        &[
            page(1, 1, "phone-cookie"),
            page(2, 2, "laptop-cookie"),
            identify(3, 3, "laptop-cookie", "u-7", "x@example.com"),
            page(4, 4, "phone-cookie"),
            identify(5, 5, "phone-cookie", "u-7", "x@example.com"),
        ],
    );
    let (state, out) = (dir.path().join("s"), dir.path().join("o"));
    let ps = replay_and_profiles("segment", &state, &out, &[&f]);
    assert_eq!(ps.len(), 1);
    assert_eq!(idents(&ps[0]), vec!["anonymous_id:laptop-cookie", "anonymous_id:phone-cookie", "email:x@example.com", "user_id:u-7"]);
    assert_eq!(ps[0]["metrics"]["event_count"], 5);
    assert_eq!(ps[0]["merged_from"].as_array().unwrap().len(), 1, "the laptop profile (younger) became an alias of the phone profile");
}

#[test]
fn kiosk_sign_ins_arriving_one_batch_at_a_time_stay_apart() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("kiosk.ndjson");
    let lines: Vec<String> =
        (0..10).map(|i| identify(i, i, "kiosk-browser", &format!("shopper-{i}"), &format!("s{i}@example.com"))).collect();
    write_lines(&f, &lines);
    let (state, out) = (dir.path().join("s"), dir.path().join("o"));
    let ps = replay_env_and_profiles("segment", &state, &out, &[&f], &[("IDGRAPH__REPLAY__BATCH_SIZE", "1")]);
    assert_eq!(ps.len(), 10, "{ps:?}");
    for p in &ps {
        let ids = idents(p);
        assert_eq!(ids.iter().filter(|i| i.starts_with("user_id:")).count(), 1, "{ids:?}");
        assert_eq!(ids.iter().filter(|i| i.starts_with("email:")).count(), 1, "each shopper keeps their own email only: {ids:?}");
        assert!(!ids.contains(&"anonymous_id:kiosk-browser".to_string()), "{ids:?}");
    }
    let lc = std::fs::read_to_string(out.join("lifecycle.ndjson")).unwrap();
    assert_eq!(lc.lines().filter(|l| l.contains("\"identifier_shared\"")).count(), 1);
}

#[test]
fn a_family_email_seen_first_does_not_absorb_a_second_login_arriving_later() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("family.ndjson");
    write_lines(&f, &[identify(1, 1, "a-mum", "mum", "family@home.example"), identify(2, 2, "a-dad", "dad", "family@home.example")]);
    let (state, out) = (dir.path().join("s"), dir.path().join("o"));
    let ps = replay_env_and_profiles("segment", &state, &out, &[&f], &[("IDGRAPH__REPLAY__BATCH_SIZE", "1")]);
    assert_eq!(ps.len(), 2, "{ps:?}");
    let dad = ps.iter().find(|p| idents(p).contains(&"user_id:dad".to_string())).expect("dad has a profile");
    assert_eq!(idents(dad), vec!["anonymous_id:a-dad", "user_id:dad"], "the family email stays with the first holder");
}
