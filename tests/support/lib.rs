//! Helpers for end-to-end tests: locate and run the `idgraph` binary.
//!
//! The binary is `$IDGRAPH_BIN` when set (the Makefile sets it), else the
//! `idgraph` next to this test's target directory (`cargo build` first).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

pub mod kafka;
pub mod registry;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> PathBuf {
    if let Ok(p) = std::env::var("IDGRAPH_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let p = dir.join("idgraph");
    assert!(p.exists(), "idgraph binary not found at {}; run `cargo build -p idgraph` or set IDGRAPH_BIN", p.display());
    p
}

/// Runs `idgraph ARGS` and returns its output (never panics on failure).
pub fn idgraph(args: &[&str]) -> Output {
    idgraph_env(args, &[])
}

pub fn idgraph_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(bin());
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("spawn idgraph")
}

/// Asserts success and returns stdout.
pub fn ok(o: &Output) -> String {
    assert!(o.status.success(), "idgraph failed: {}\nstderr:\n{}", o.status, String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Replays `files` into `state`/`out` and returns `profiles` output parsed.
pub fn replay_and_profiles(format: &str, state: &Path, out: &Path, files: &[&Path]) -> Vec<serde_json::Value> {
    replay_env_and_profiles(format, state, out, files, &[])
}

/// [`replay_and_profiles`] with extra environment (config overrides).
pub fn replay_env_and_profiles(format: &str, state: &Path, out: &Path, files: &[&Path], env: &[(&str, &str)]) -> Vec<serde_json::Value> {
    let mut args = vec!["replay", "--format", format, "--state", state.to_str().unwrap(), "--out", out.to_str().unwrap()];
    for f in files {
        args.push(f.to_str().unwrap());
    }
    ok(&idgraph_env(&args, env));
    profiles(state)
}

/// Asserts that the replay that wrote `out` fired no rule: only then is
/// its result independent of the order events arrive in, so that a Kafka
/// run (another order) must equal it exactly.
pub fn assert_no_rule_fired(out: &Path) {
    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["conflicts"], 0, "this data must not make a rule fire");
    assert_eq!(summary["identifiers_shared"], 0, "this data must not make an identifier shared");
}

pub fn profiles(state: &Path) -> Vec<serde_json::Value> {
    let s = ok(&idgraph(&["profiles", "--state", state.to_str().unwrap()]));
    s.lines().map(|l| serde_json::from_str(l).expect("profile JSON")).collect()
}

/// Writes the generator's events for `cfg` to `path` and returns the text
/// of its truth file.
pub fn generate(path: &Path, cfg: idgraph_loadtest::gen::GenConfig) -> String {
    let mut g = idgraph_loadtest::gen::Generator::new(cfg);
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    g.write_events(&mut w).unwrap();
    std::io::Write::flush(&mut w).unwrap();
    let mut t = Vec::new();
    g.write_truth(&mut t).unwrap();
    String::from_utf8(t).unwrap()
}

/// Profiles as (identifiers, event count), sorted: independent of profile IDs.
pub fn shape(profiles: &[serde_json::Value]) -> Vec<(Vec<String>, u64)> {
    let mut v: Vec<_> = profiles.iter().map(|p| (idents(p), p["metrics"]["event_count"].as_u64().unwrap())).collect();
    v.sort();
    v
}

/// The identifiers of a profile as `type:value` strings, sorted.
pub fn idents(p: &serde_json::Value) -> Vec<String> {
    let mut v: Vec<String> = p["identifiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| format!("{}:{}", i["type"].as_str().unwrap(), i["value"].as_str().unwrap()))
        .collect();
    v.sort();
    v
}

/// Writes lines to a file.
pub fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// Asserts two profile sets have the same shape; on failure prints only
/// the profiles found on one side and not the other (at most 10 each).
pub fn assert_same_shape(got: &[serde_json::Value], want: &[serde_json::Value], what: &str) {
    let (g, w) = (shape(got), shape(want));
    if g == w {
        return;
    }
    let only = |a: &[(Vec<String>, u64)], b: &[(Vec<String>, u64)]| -> Vec<String> {
        a.iter().filter(|x| !b.contains(x)).take(10).map(|x| format!("{x:?}")).collect()
    };
    panic!(
        "{what}: {} profiles against {} expected\nonly in the result:\n  {}\nonly in the expected:\n  {}",
        g.len(),
        w.len(),
        only(&g, &w).join("\n  "),
        only(&w, &g).join("\n  ")
    );
}

/// A schema of `schemas/`.
pub fn avro_schema(name: &str) -> apache_avro::Schema {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas").join(name);
    apache_avro::Schema::parse_str(&std::fs::read_to_string(&p).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A JSON record checked strictly against `schema` and encoded as Avro.
pub fn validate_record(v: &serde_json::Value, schema: &apache_avro::Schema) -> Result<(), String> {
    idgraph_stream::avro::check_json(&idgraph_stream::avro::avro_form(v, schema), schema)?;
    idgraph_stream::avro::encode(v.clone(), schema, 1).map(drop).map_err(|e| format!("does not encode: {e}"))
}

/// The bytes of a lower-case hex string (`idgraph-consume --hex`).
pub fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// Where a test keeps its files: the temporary directory, or `KEEP_DIR`
/// (emptied first) to keep states, logs and data for a post-mortem.
pub fn work_dir(tmp: &tempfile::TempDir) -> PathBuf {
    match std::env::var("KEEP_DIR") {
        Ok(d) => {
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap();
            PathBuf::from(d)
        }
        Err(_) => tmp.path().to_path_buf(),
    }
}
