//! Fault injection for crash tests: `IDGRAPH_FAULT=<point>:<n>` aborts the
//! process (as `kill -9` would: no unwinding, no flushing) the n-th time
//! execution reaches `<point>`. Unset in production; costs one atomic load.
//! Points: `replay.before-outputs`, `replay.before-commit`, `replay.after-commit`,
//! `run.after-commit` (a batch's state written, its records not yet
//! produced), `run.before-markers` (its records acknowledged, its changelog
//! markers not yet produced), `run.before-clpos` (its markers acknowledged,
//! their positions not yet stored).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

static SPEC: OnceLock<Option<(String, u64)>> = OnceLock::new();
static HITS: AtomicU64 = AtomicU64::new(0);

pub fn point(name: &str) {
    let spec = SPEC.get_or_init(|| {
        let v = std::env::var("IDGRAPH_FAULT").ok()?;
        let (p, n) = v.rsplit_once(':')?;
        Some((p.to_string(), n.parse().ok()?))
    });
    if let Some((p, n)) = spec {
        if p == name && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *n {
            eprintln!("fault injection: aborting at {name}");
            std::process::abort();
        }
    }
}
