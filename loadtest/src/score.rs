//! Pairwise precision, recall and F1 of resolved profiles against truth.
//!
//! Only identifiers that belong to a person are scored (shared identifiers,
//! junk and identifiers never seen are not). A predicted pair is correct when
//! both identifiers belong to the same person (precision). A truth pair is
//! the pair of identifiers of one person joined by the evidence in the data
//! (recall): identifiers no event ever linked cannot be expected together.

use rustc_hash::FxHashMap;
use std::collections::BTreeMap;

#[derive(Debug, Default)]
pub struct Truth {
    /// identifier → (person, evidence cluster)
    pub owner: FxHashMap<String, (u64, u32)>,
    pub shared: Vec<String>,
}

impl Truth {
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut t = Truth::default();
        let mut next_cluster = 0u32;
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(line).map_err(|e| anyhow::anyhow!("truth line {}: {e}", n + 1))?;
            if let Some(sh) = v.get("shared").and_then(|s| s.as_array()) {
                t.shared.extend(sh.iter().filter_map(|x| x.as_str().map(str::to_string)));
                continue;
            }
            let person = v["person"].as_u64().ok_or_else(|| anyhow::anyhow!("truth line {}: no person", n + 1))?;
            for c in v["clusters"].as_array().into_iter().flatten() {
                for id in c.as_array().into_iter().flatten().filter_map(|x| x.as_str()) {
                    t.owner.insert(id.to_string(), (person, next_cluster));
                }
                next_cluster += 1;
            }
        }
        Ok(t)
    }
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Score {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub predicted_pairs: u64,
    pub correct_pairs: u64,
    pub truth_pairs: u64,
    pub found_truth_pairs: u64,
    pub profiles: u64,
    pub scored_identifiers: u64,
    pub unresolved_identifiers: u64,
    /// Profiles holding identifiers of several persons: (profile, persons).
    pub over_merges: Vec<(String, Vec<u64>)>,
    /// Evidence clusters spread over several profiles: (person, profiles).
    pub under_merges: Vec<(u64, usize)>,
}

fn pairs(n: u64) -> u64 {
    n * n.saturating_sub(1) / 2
}

/// `profiles`: NDJSON golden profiles (output of `idgraph profiles`).
pub fn score(truth: &Truth, profiles: &str) -> anyhow::Result<Score> {
    let mut s = Score::default();
    // Per profile: counts per person and per cluster.
    let mut cluster_profiles: FxHashMap<u32, Vec<String>> = FxHashMap::default();
    let mut cluster_person: FxHashMap<u32, u64> = FxHashMap::default();
    let mut cluster_size: FxHashMap<u32, u64> = FxHashMap::default();
    for (_, (p, c)) in truth.owner.iter() {
        *cluster_size.entry(*c).or_default() += 1;
        cluster_person.insert(*c, *p);
    }
    let mut placed = 0u64;
    for (n, line) in profiles.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| anyhow::anyhow!("profiles line {}: {e}", n + 1))?;
        let id = v["profile_id"].as_str().unwrap_or("").to_string();
        s.profiles += 1;
        let mut by_person: BTreeMap<u64, u64> = BTreeMap::new();
        let mut by_cluster: BTreeMap<u32, u64> = BTreeMap::new();
        let mut total = 0u64;
        for i in v["identifiers"].as_array().into_iter().flatten() {
            let key = format!("{}:{}", i["type"].as_str().unwrap_or(""), i["value"].as_str().unwrap_or(""));
            if let Some((p, c)) = truth.owner.get(&key) {
                *by_person.entry(*p).or_default() += 1;
                *by_cluster.entry(*c).or_default() += 1;
                total += 1;
            }
        }
        placed += total;
        s.predicted_pairs += pairs(total);
        s.correct_pairs += by_person.values().map(|n| pairs(*n)).sum::<u64>();
        s.found_truth_pairs += by_cluster.values().map(|n| pairs(*n)).sum::<u64>();
        if by_person.len() > 1 && s.over_merges.len() < 20 {
            s.over_merges.push((id.clone(), by_person.keys().copied().collect()));
        }
        for c in by_cluster.keys() {
            cluster_profiles.entry(*c).or_default().push(id.clone());
        }
    }
    s.truth_pairs = cluster_size.values().map(|n| pairs(*n)).sum();
    s.scored_identifiers = truth.owner.len() as u64;
    s.unresolved_identifiers = s.scored_identifiers.saturating_sub(placed);
    let mut under: Vec<(u64, usize)> = cluster_profiles
        .iter()
        .filter(|(_, ps)| ps.len() > 1)
        .map(|(c, ps)| (cluster_person.get(c).copied().unwrap_or(0), ps.len()))
        .collect();
    under.sort();
    under.truncate(20);
    s.under_merges = under;
    s.precision = if s.predicted_pairs == 0 { 1.0 } else { s.correct_pairs as f64 / s.predicted_pairs as f64 };
    s.recall = if s.truth_pairs == 0 { 1.0 } else { s.found_truth_pairs as f64 / s.truth_pairs as f64 };
    s.f1 = if s.precision + s.recall == 0.0 { 0.0 } else { 2.0 * s.precision * s.recall / (s.precision + s.recall) };
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_pairs_against_truth() {
        let truth = Truth::parse(
            r#"{"person":1,"clusters":[["email:a","user_id:a"],["phone:a"]]}
{"person":2,"clusters":[["email:b","user_id:b"]]}
{"shared":["anonymous_id:k"]}"#,
        )
        .unwrap();
        // One correct profile, one over-merge of a's phone with b.
        let profiles = r#"{"profile_id":"P1","identifiers":[{"type":"email","value":"a"},{"type":"user_id","value":"a"},{"type":"anonymous_id","value":"k"}]}
{"profile_id":"P2","identifiers":[{"type":"email","value":"b"},{"type":"user_id","value":"b"},{"type":"phone","value":"a"}]}"#;
        let s = score(&truth, profiles).unwrap();
        assert_eq!(s.predicted_pairs, 1 + 3);
        assert_eq!(s.correct_pairs, 1 + 1);
        assert_eq!(s.truth_pairs, 2);
        assert_eq!(s.found_truth_pairs, 2);
        assert_eq!(s.precision, 0.5);
        assert_eq!(s.recall, 1.0);
        assert_eq!(s.over_merges.len(), 1);
    }
}
