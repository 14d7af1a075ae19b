//! Read-only queries over a state: `profiles`, `lookup`, `explain`.

use crate::config::Config;
use anyhow::{Context, Result};
use idgraph_core::config::CoreConfig;
use idgraph_core::golden;
use idgraph_core::ident::IdentKey;
use idgraph_core::normalize::Normalizer;
use idgraph_core::profile_id::ProfileId;
use idgraph_core::record::{LiveProfile, ProfileRecord};
use idgraph_core::time::format_rfc3339;
use idgraph_state::{self as state, StateError};
use idgraph_store::{RocksOptions, RocksStore, Store};
use std::collections::VecDeque;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

/// Opens a state read-only with the core config of `cfg`: its partition
/// count, and the config checked against the custom identifier types the
/// state recorded (those it does not declare keep their recorded names).
pub fn open(dir: &Path, cfg: &Config) -> Result<(RocksStore, u16, Arc<CoreConfig>)> {
    let store = RocksStore::open_read_only(dir, &RocksOptions { block_cache_bytes: 64 << 20, ..Default::default() })?;
    let p =
        state::get_meta::<u16>(&store, "partitions")?.context("the state has no partition count; was it written by `idgraph replay`?")?;
    state::check_layout(&store)?;
    let mut core = cfg.core()?;
    let held = state::check_types(&store, &core, false)?;
    core.adopt_type_names(&held);
    Ok((store, p, Arc::new(core)))
}

/// Every live golden profile as NDJSON. Returns how many were written.
pub fn profiles(store: &dyn Store, cfg: &CoreConfig, out: &mut dyn Write) -> Result<u64> {
    let mut n = 0u64;
    let mut io_err = None;
    state::for_each_profile(store, &mut |id, rec| {
        if io_err.is_some() {
            return;
        }
        if let ProfileRecord::Live(lp) = rec {
            if !lp.idents.is_empty() {
                n += 1;
                if let Err(e) = writeln!(out, "{}", golden::render(id, &lp, cfg)) {
                    io_err = Some(e);
                }
            }
        }
    })?;
    if let Some(e) = io_err {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(e.into());
        }
    }
    Ok(n)
}

/// Parses `TYPE:VALUE` and normalises the value as ingestion would.
pub fn parse_ident(cfg: &Arc<CoreConfig>, arg: &str) -> Result<IdentKey> {
    let (ty, value) = arg.split_once(':').context("identifiers are written TYPE:VALUE, e.g. email:ann@example.com")?;
    let mut n = Normalizer::new(cfg.clone());
    n.normalize_named(ty, value).map_err(|r| anyhow::anyhow!("identifier of type `{ty}` is not usable: {}", r.as_str()))
}

/// The live profile holding an identifier.
pub fn lookup(store: &dyn Store, partitions: u16, k: &IdentKey) -> Result<Option<(ProfileId, Box<LiveProfile>)>, StateError> {
    let Some(rec) = state::load_ident(store, partitions, k)? else { return Ok(None) };
    let Some(owner) = rec.owner else { return Ok(None) };
    let found = state::resolve(store, partitions, owner)?;
    Ok(found.filter(|(_, lp)| lp.contains(k)))
}

/// The chain of links joining two identifiers, one line per hop, with the
/// evidence (first event they co-occurred in). The inner `Err` says why
/// nothing joins them (not found: exit code 1); the outer one is a failure.
pub fn explain(store: &dyn Store, partitions: u16, cfg: &CoreConfig, a: &IdentKey, b: &IdentKey) -> Result<Result<Vec<String>, String>> {
    let Some((pa, lp)) = lookup(store, partitions, a)? else { return Ok(Err("the first identifier is in no profile".into())) };
    let Some((pb, _)) = lookup(store, partitions, b)? else { return Ok(Err("the second identifier is in no profile".into())) };
    if pa != pb {
        return Ok(Err(format!("the identifiers are in different profiles ({pa} and {pb}): nothing joins them")));
    }
    let (ia, ib) = (lp.index_of(a).unwrap_or(0), lp.index_of(b).unwrap_or(0));
    let n = lp.idents.len();
    let mut adj: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (ei, e) in lp.edges.iter().enumerate() {
        adj[e.a as usize].push(ei);
        adj[e.b as usize].push(ei);
    }
    let mut via: Vec<Option<usize>> = vec![None; n];
    let mut seen = vec![false; n];
    let mut q = VecDeque::from([ia]);
    seen[ia] = true;
    while let Some(x) = q.pop_front() {
        if x == ib {
            break;
        }
        for &ei in &adj[x] {
            let e = &lp.edges[ei];
            let y = if e.a as usize == x { e.b as usize } else { e.a as usize };
            if !seen[y] {
                seen[y] = true;
                via[y] = Some(ei);
                q.push_back(y);
            }
        }
    }
    if !seen[ib] {
        return Ok(Err(format!("no chain of stored links joins them in profile {pa}")));
    }
    let show = |i: usize| format!("{}:{}", cfg.type_name(lp.idents[i].key.ty()), lp.idents[i].key.value());
    let mut hops = Vec::new();
    let mut cur = ib;
    while cur != ia {
        let Some(ei) = via[cur] else { break };
        let e = &lp.edges[ei];
        let prev = if e.a as usize == cur { e.b as usize } else { e.a as usize };
        hops.push(format!(
            "{} -- {}  (event {} from {} at {})",
            show(prev),
            show(cur),
            e.evidence.event_id,
            e.evidence.source,
            format_rfc3339(e.evidence.ts)
        ));
        cur = prev;
    }
    hops.reverse();
    let mut out = vec![format!("profile {pa}: {} link(s)", hops.len())];
    out.extend(hops);
    Ok(Ok(out))
}
