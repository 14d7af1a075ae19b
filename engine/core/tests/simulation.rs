//! Deterministic simulation of the partition protocol under many seeded
//! random interleavings (per sender→receiver FIFO, as a Kafka topic gives).
//!
//! Checks, at quiescence: every profile satisfies the rules; every identifier
//! belongs to exactly one live profile and its owner resolves there; every
//! alias resolves to a live profile; and, where no rule can fire, the
//! profiles equal the connected components of the co-occurrence graph.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use idgraph_core::command::Command;
use idgraph_core::config::{CoreConfig, IdentitySection, TraitsSection, TypeSection};
use idgraph_core::event::Touchpoint;
use idgraph_core::ident::{IdentKey, IdentType};
use idgraph_core::invariants::{check, Snapshot};
use idgraph_core::partition::{Effects, EmptyLoader, Partition};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

const TYPES: [IdentType; 6] =
    [IdentType::USER_ID, IdentType::EMAIL, IdentType::PHONE, IdentType::DEVICE_ID, IdentType::ANONYMOUS_ID, IdentType::LOYALTY_ID];

fn ident(rng: &mut ChaCha8Rng, universe: u32) -> IdentKey {
    let ty = TYPES[rng.gen_range(0..TYPES.len())];
    IdentKey::new(ty, format!("v{}", rng.gen_range(0..universe)))
}

/// Random events over a small universe so that links and merges are common.
fn events(rng: &mut ChaCha8Rng, n: usize, universe: u32, cfg: &CoreConfig) -> Vec<Touchpoint> {
    (0..n)
        .map(|i| {
            let k = rng.gen_range(1..=4);
            let mut idents: Vec<IdentKey> = (0..k).map(|_| ident(rng, universe)).collect();
            idents.sort_by(|a, b| (cfg.priority(a.ty()), a).cmp(&(cfg.priority(b.ty()), b)));
            idents.dedup();
            Touchpoint {
                event_id: format!("e{i}").into(),
                ts: 1_000_000 + rng.gen_range(0..10_000),
                source: ["web", "app", "pos"][i % 3].into(),
                idents,
                traits: vec![("n".into(), format!("{i}").into())],
                revenue: if i % 5 == 0 { Some(1.0) } else { None },
                is_order: i % 5 == 0,
                consent: vec![],
            }
        })
        .collect()
}

fn k(x: &IdentKey) -> String {
    format!("{}:{}", x.ty(), x.value())
}

fn describe(c: &Command) -> String {
    match c {
        Command::Route { ev, probe } => {
            format!("Route {} probe={probe} [{}]", ev.event_id, ev.idents.iter().map(k).collect::<Vec<_>>().join(","))
        }
        Command::Create { id, ev } => format!("Create {id} {} [{}]", ev.event_id, ev.idents.iter().map(k).collect::<Vec<_>>().join(",")),
        Command::Apply { to, ev } => format!("Apply {to} {} [{}]", ev.event_id, ev.idents.iter().map(k).collect::<Vec<_>>().join(",")),
        Command::Attach { to, ident, .. } => format!("Attach {to} {}", k(ident)),
        Command::AttachDone { to, ident, outcome, .. } => format!("AttachDone {to} {} {outcome:?}", k(ident)),
        Command::Link { a, b, link } => format!("Link {a} {b} {}-{}", k(&link.anchor), k(&link.ident)),
        Command::Handover { to, from, state, .. } => {
            format!("Handover {to} <- {from} [{}]", state.idents.iter().map(|e| k(&e.key)).collect::<Vec<_>>().join(","))
        }
        Command::Absorbed { id, into } => format!("Absorbed {id} into {into}"),
        Command::Refused { id, by } => format!("Refused {id} by {by}"),
        Command::AddEdge { to, link } => format!("AddEdge {to} {}-{}", k(&link.anchor), k(&link.ident)),
        Command::Repoint { ident, to, epoch } => format!("Repoint {} to {to} epoch {epoch}", k(ident)),
        Command::RecordRefusal { ident, with, .. } => format!("RecordRefusal {} with {with}", k(ident)),
        Command::Detach { from, ident } => format!("Detach {} from {from}", k(ident)),
        Command::CreatePiece { id, state } => {
            format!("CreatePiece {id} [{}]", state.idents.iter().map(|e| k(&e.key)).collect::<Vec<_>>().join(","))
        }
    }
}

struct Sim {
    parts: Vec<Partition>,
    /// (from, to) → FIFO; `from == P` is the input.
    chans: BTreeMap<(u16, u16), VecDeque<Command>>,
    fx: Effects,
}

impl Sim {
    fn new(p: u16, cfg: Arc<CoreConfig>) -> Self {
        Self { parts: (0..p).map(|i| Partition::new(i, p, cfg.clone())).collect(), chans: BTreeMap::new(), fx: Effects::default() }
    }

    fn send(&mut self, from: u16, cmd: Command) {
        let to = cmd.partition(self.parts.len() as u16);
        self.chans.entry((from, to)).or_default().push_back(cmd);
    }

    /// Runs with inputs injected at random points until quiescence.
    fn run(&mut self, rng: &mut ChaCha8Rng, evs: Vec<Touchpoint>) {
        self.run_observed(rng, evs, &mut |_, _| {});
    }

    /// [`Sim::run`], calling `step` with each partition after it handled a
    /// command.
    fn run_observed(&mut self, rng: &mut ChaCha8Rng, evs: Vec<Touchpoint>, step: &mut dyn FnMut(&Partition, u64)) {
        let p = self.parts.len() as u16;
        let mut inputs: VecDeque<Touchpoint> = evs.into();
        let mut steps = 0u64;
        loop {
            let live: Vec<(u16, u16)> = self.chans.iter().filter(|(_, q)| !q.is_empty()).map(|(k, _)| *k).collect();
            if live.is_empty() && inputs.is_empty() {
                break;
            }
            if !inputs.is_empty() && (live.is_empty() || rng.gen_bool(0.3)) {
                let ev = inputs.pop_front().unwrap();
                self.send(p, Command::Route { ev: Box::new(ev), probe: 0 });
                continue;
            }
            let (from, to) = live[rng.gen_range(0..live.len())];
            let cmd = self.chans.get_mut(&(from, to)).unwrap().pop_front().unwrap();
            if std::env::var("SIM_TRACE").is_ok() {
                eprintln!("{from}->{to}: {}", describe(&cmd));
            }
            self.parts[to as usize].handle(cmd, &mut EmptyLoader, &mut self.fx);
            for c in std::mem::take(&mut self.fx.cmds) {
                self.send(to, c);
            }
            steps += 1;
            step(&self.parts[to as usize], steps);
            assert!(steps < 5_000_000, "no quiescence: livelock?");
        }
    }

    fn snapshot(&self) -> Snapshot {
        let mut s = Snapshot::default();
        for p in &self.parts {
            p.snapshot_into(&mut s);
        }
        s
    }
}

/// Connected components of the co-occurrence graph.
fn components(evs: &[Touchpoint]) -> BTreeSet<Vec<IdentKey>> {
    let mut parent: BTreeMap<IdentKey, IdentKey> = BTreeMap::new();
    fn find(p: &mut BTreeMap<IdentKey, IdentKey>, k: &IdentKey) -> IdentKey {
        let up = p.get(k).cloned().unwrap_or_else(|| k.clone());
        if &up == k {
            return up;
        }
        let r = find(p, &up);
        p.insert(k.clone(), r.clone());
        r
    }
    for ev in evs {
        for k in &ev.idents {
            parent.entry(k.clone()).or_insert_with(|| k.clone());
        }
        for w in ev.idents.windows(2) {
            let (a, b) = (find(&mut parent, &w[0]), find(&mut parent, &w[1]));
            if a != b {
                parent.insert(a, b);
            }
        }
    }
    let keys: Vec<IdentKey> = parent.keys().cloned().collect();
    let mut groups: BTreeMap<IdentKey, Vec<IdentKey>> = BTreeMap::new();
    for k in keys {
        let r = find(&mut parent, &k);
        groups.entry(r).or_default().push(k);
    }
    groups
        .into_values()
        .map(|mut v| {
            v.sort();
            v
        })
        .collect()
}

/// Seeds per partition count: `SIM_FROM..SIM_SEEDS` (default 0..1000, a
/// few seconds in release; races between partitions show in a few seeds
/// per thousand). `SIM_TRACE=1` prints every command delivered.
fn seeds() -> std::ops::Range<u64> {
    let var = |k: &str| std::env::var(k).ok().and_then(|s| s.parse().ok());
    var("SIM_FROM").unwrap_or(0)..var("SIM_SEEDS").unwrap_or(1000)
}

fn unlimited() -> Arc<CoreConfig> {
    let mut id = IdentitySection { max_identifiers: 1_000_000, shared_threshold: 1_000_000, ..Default::default() };
    for (_, name) in IdentType::BUILT_IN {
        id.types.insert(name.into(), TypeSection { max_per_profile: Some(1_000_000), ..Default::default() });
    }
    Arc::new(CoreConfig::build(&id, &TraitsSection::default()).unwrap())
}

/// The events the profiles account for (a live record without
/// identifiers is no profile: its events must be counted unlinkable).
fn event_count(s: &Snapshot) -> u64 {
    s.profiles
        .values()
        .filter_map(|r| match r {
            idgraph_core::record::ProfileRecord::Live(lp) if !lp.idents.is_empty() => {
                Some(lp.fragments.iter().map(|f| f.metrics.event_count).sum::<u64>())
            }
            _ => None,
        })
        .sum()
}

#[test]
fn without_rule_firings_profiles_are_the_connected_components() {
    let cfg = unlimited();
    for p in [1u16, 4, 16] {
        for seed in seeds() {
            let mut rng = ChaCha8Rng::seed_from_u64(seed * 1000 + u64::from(p));
            let evs = events(&mut rng, 120, 60, &cfg);
            let expected = components(&evs);
            let mut sim = Sim::new(p, cfg.clone());
            sim.run(&mut rng, evs.clone());
            let snap = sim.snapshot();
            let errs = check(&snap, &cfg);
            assert!(errs.is_empty(), "P={p} seed={seed}: {errs:?}");
            let got: BTreeSet<Vec<IdentKey>> = snap.live_groups().into_values().filter(|v| !v.is_empty()).collect();
            assert_eq!(got, expected, "P={p} seed={seed}");
            assert_eq!(event_count(&snap), evs.len() as u64, "P={p} seed={seed}: every event counted once");
        }
    }
}

#[test]
fn with_default_rules_every_invariant_holds() {
    let cfg = Arc::new(CoreConfig::default());
    let (mut conflicts, mut shared, mut splits, mut merges) = (0, 0, 0, 0);
    for p in [1u16, 4, 16] {
        for seed in seeds() {
            let mut rng = ChaCha8Rng::seed_from_u64(seed * 7919 + u64::from(p));
            let evs = events(&mut rng, 150, 40, &cfg);
            let n = evs.len() as u64;
            let mut sim = Sim::new(p, cfg.clone());
            sim.run(&mut rng, evs);
            let snap = sim.snapshot();
            let errs = check(&snap, &cfg);
            assert!(errs.is_empty(), "P={p} seed={seed}: {errs:?}");
            let stats: u64 = sim.parts.iter().map(|x| x.stats.internal_errors).sum();
            assert_eq!(stats, 0, "P={p} seed={seed}: internal errors");
            let applied: u64 = sim.parts.iter().map(|x| x.stats.events_applied).sum();
            let unlinkable: u64 = sim.parts.iter().map(|x| x.stats.events_unlinkable).sum();
            assert_eq!(event_count(&snap) + unlinkable, n, "P={p} seed={seed}: every event in one profile or unlinkable");
            // An event applied to a profile that was emptied later counts
            // as applied and as unlinkable.
            assert!(applied + unlinkable >= n, "P={p} seed={seed}: events neither applied nor unlinkable");
            conflicts += sim.parts.iter().map(|x| x.stats.conflicts).sum::<u64>();
            shared += sim.parts.iter().map(|x| x.stats.identifiers_shared).sum::<u64>();
            splits += sim.parts.iter().map(|x| x.stats.splits).sum::<u64>();
            merges += sim.parts.iter().map(|x| x.stats.merges).sum::<u64>();
        }
    }
    eprintln!("conflicts {conflicts}, shared {shared}, splits {splits}, merges {merges}");
    assert!(conflicts > 0 && shared > 0 && splits > 0 && merges > 0, "the generator must make every rule path run");
}

/// Events of disjoint persons whose identifiers fit the default rules
/// (one login, one loyalty card, two emails, one phone, three cookies):
/// no interleaving may make a rule fire, and the profiles are the persons.
fn persons_events(rng: &mut ChaCha8Rng, persons: u32, n: usize, cfg: &CoreConfig) -> Vec<Touchpoint> {
    let own = |p: u32, ty: IdentType, i: u32| IdentKey::new(ty, format!("p{p}-{i}"));
    (0..n)
        .map(|i| {
            let p = rng.gen_range(0..persons);
            let mut idents = vec![own(p, IdentType::ANONYMOUS_ID, rng.gen_range(0..3))];
            for (ty, k) in [(IdentType::USER_ID, 1), (IdentType::LOYALTY_ID, 1), (IdentType::EMAIL, 2), (IdentType::PHONE, 1)] {
                if rng.gen_bool(0.35) {
                    idents.push(own(p, ty, rng.gen_range(0..k)));
                }
            }
            idents.sort_by(|a, b| (cfg.priority(a.ty()), a).cmp(&(cfg.priority(b.ty()), b)));
            idents.dedup();
            Touchpoint {
                event_id: format!("e{i}").into(),
                ts: 1_000_000 + rng.gen_range(0..10_000),
                source: "web".into(),
                idents,
                traits: vec![],
                revenue: None,
                is_order: false,
                consent: vec![],
            }
        })
        .collect()
}

/// A person's own events racing through the partitions never conflict: a
/// profile still attaching an identifier that the profile it merges with
/// already owns counts it once (the attach outcome and the hand-over come
/// from different partitions, in either order).
#[test]
fn persons_within_the_rules_never_conflict() {
    let cfg = Arc::new(CoreConfig::default());
    let mut merges = 0;
    for p in [1u16, 4, 16] {
        for seed in seeds() {
            let mut rng = ChaCha8Rng::seed_from_u64(seed * 104_729 + u64::from(p));
            let evs = persons_events(&mut rng, 12, 160, &cfg);
            let expected = components(&evs);
            let mut sim = Sim::new(p, cfg.clone());
            sim.run(&mut rng, evs.clone());
            let conflicts: u64 = sim.parts.iter().map(|x| x.stats.conflicts).sum();
            assert_eq!(conflicts, 0, "P={p} seed={seed}: a rule fired for persons within the rules");
            let snap = sim.snapshot();
            let got: BTreeSet<Vec<IdentKey>> = snap.live_groups().into_values().filter(|v| !v.is_empty()).collect();
            assert_eq!(got, expected, "P={p} seed={seed}");
            assert_eq!(event_count(&snap), evs.len() as u64, "P={p} seed={seed}: every event counted once");
            merges += sim.parts.iter().map(|x| x.stats.merges).sum::<u64>();
        }
    }
    assert!(merges > 0, "the generator must make profiles merge");
}

/// Every sighting of an identifier counts, however the commands race: its
/// first and last seen in its profile are the earliest and latest event
/// naming it, also when an event names it while the profile is still
/// attaching it (its attach in flight to the identifier's partition).
#[test]
fn identifier_times_count_every_sighting() {
    let cfg = Arc::new(CoreConfig::default());
    for p in [1u16, 4, 16] {
        for seed in seeds() {
            let mut rng = ChaCha8Rng::seed_from_u64(seed * 7_919 + u64::from(p));
            let evs = persons_events(&mut rng, 6, 120, &cfg);
            let mut want: BTreeMap<IdentKey, (idgraph_core::time::Millis, idgraph_core::time::Millis)> = BTreeMap::new();
            for e in &evs {
                for x in &e.idents {
                    let w = want.entry(x.clone()).or_insert((e.ts, e.ts));
                    *w = (w.0.min(e.ts), w.1.max(e.ts));
                }
            }
            let mut sim = Sim::new(p, cfg.clone());
            sim.run(&mut rng, evs);
            let snap = sim.snapshot();
            let mut got: BTreeMap<IdentKey, (idgraph_core::time::Millis, idgraph_core::time::Millis)> = BTreeMap::new();
            for r in snap.profiles.values() {
                if let idgraph_core::record::ProfileRecord::Live(lp) = r {
                    for e in &lp.idents {
                        got.insert(e.key.clone(), (e.first_seen, e.last_seen));
                    }
                }
            }
            for (k, w) in &want {
                assert_eq!(got.get(k), Some(w), "P={p} seed={seed}: {} first/last seen", self::k(k));
            }
        }
    }
}

#[test]
fn same_order_gives_identical_outputs() {
    let cfg = Arc::new(CoreConfig::default());
    let run = || {
        let mut rng = ChaCha8Rng::seed_from_u64(42);
        let evs = events(&mut rng, 300, 80, &cfg);
        let mut c = idgraph_core::cluster::Cluster::new(4, cfg.clone());
        let mut fx = Effects::default();
        for e in evs {
            c.submit(e);
        }
        c.run(&mut EmptyLoader, &mut fx);
        let mut snap = Snapshot::default();
        for p in &c.parts {
            p.snapshot_into(&mut snap);
        }
        let lines: Vec<String> = snap
            .profiles
            .iter()
            .filter_map(|(id, r)| match r {
                idgraph_core::record::ProfileRecord::Live(lp) => Some(idgraph_core::golden::render(*id, lp, &cfg)),
                _ => None,
            })
            .collect();
        (lines, serde_json::to_string(&fx.lifecycle).unwrap())
    };
    assert_eq!(run(), run());
}

/// Outputs are rendered once per batch, and batches are cut differently
/// after a restart or a partition move: so every visible change of a
/// profile must take a new version, or one `(profile_id, version)` would be
/// published with two contents. Rendering after every single command (the
/// finest batching) must never show two contents for one version.
#[test]
fn one_profile_version_renders_one_content() {
    let cfg = Arc::new(CoreConfig::default());
    let mut checked = 0u64;
    for p in [1u16, 4] {
        for seed in seeds().take(8) {
            let mut rng = ChaCha8Rng::seed_from_u64(seed * 31 + u64::from(p));
            let evs = events(&mut rng, 150, 40, &cfg);
            let mut sim = Sim::new(p, cfg.clone());
            let mut seen: BTreeMap<(idgraph_core::profile_id::ProfileId, u64), String> = BTreeMap::new();
            sim.run_observed(&mut rng, evs, &mut |part, step| {
                let mut snap = Snapshot::default();
                part.snapshot_into(&mut snap);
                for (id, r) in &snap.profiles {
                    if let idgraph_core::record::ProfileRecord::Live(lp) = r {
                        let line = idgraph_core::golden::render(*id, lp, &cfg);
                        if let Some(prev) = seen.insert((*id, lp.version), line.clone()) {
                            assert_eq!(prev, line, "P={p} seed={seed} step {step}: version {} of {id} changed content", lp.version);
                        }
                        checked += 1;
                    }
                }
            });
        }
    }
    assert!(checked > 1000, "too few renderings checked: {checked}");
}

/// A store behind the cluster: what batches drained, read back by loads.
#[derive(Default)]
struct Stored(Snapshot);

impl idgraph_core::partition::Loader for Stored {
    fn ident(&mut self, _: u16, k: &IdentKey) -> Option<idgraph_core::record::IdentRecord> {
        self.0.idents.get(k).cloned()
    }
    fn profile(&mut self, _: u16, id: &idgraph_core::profile_id::ProfileId) -> Option<idgraph_core::record::ProfileRecord> {
        self.0.profiles.get(id).cloned()
    }
}

/// Everything a batched run leaves: the stored records, the lifecycle and
/// consent outputs, the counters, and the owner cache's answers.
type Batched = (Snapshot, String, Vec<idgraph_core::partition::Stats>, u64);

/// Runs `evs` through a cluster in batches of `batch` events, writing each
/// batch's dirty records to a store and then evicting the record cache
/// down to `cache` entries (so later batches load records again).
fn batched(cfg: &Arc<CoreConfig>, p: u16, evs: &[Touchpoint], batch: usize, cache: usize, owner_bytes: usize) -> Batched {
    use idgraph_core::partition::DirtyRef;
    let mut c = idgraph_core::cluster::Cluster::new(p, cfg.clone()).with_owner_cache(owner_bytes);
    let mut store = Stored::default();
    let mut fx = Effects::default();
    for chunk in evs.chunks(batch) {
        for e in chunk {
            c.submit(e.clone());
        }
        c.run(&mut store, &mut fx);
        for part in &mut c.parts {
            part.drain_dirty(&mut |d, _| {
                match d {
                    DirtyRef::Ident(k, Some(r), _) => drop(store.0.idents.insert(k.clone(), r.clone())),
                    DirtyRef::Ident(k, None, _) => drop(store.0.idents.remove(k)),
                    DirtyRef::Profile(id, Some(r), _) => drop(store.0.profiles.insert(id, (**r).clone())),
                    DirtyRef::Profile(id, None, _) => drop(store.0.profiles.remove(&id)),
                }
                true
            });
            part.end_batch(cache, false);
        }
    }
    let outputs = format!("{}\n{}", serde_json::to_string(&fx.lifecycle).unwrap(), serde_json::to_string(&fx.consent).unwrap());
    let hits = c.parts.iter().map(Partition::owner_cache_hits).sum();
    (store.0, outputs, c.parts.iter().map(|x| x.stats.clone()).collect(), hits)
}

/// The owner cache answers what the identifier's record would: with one
/// that barely holds anything (entries replaced all the time) or one that
/// holds everything, every stored record, output and counter equals a run
/// without it, while records keep leaving the record cache.
#[test]
fn the_owner_cache_changes_no_outcome() {
    let cfg = Arc::new(CoreConfig::default());
    let mut hits = 0;
    for p in [1u16, 4] {
        for seed in seeds().take(40) {
            let mut rng = ChaCha8Rng::seed_from_u64(seed * 613 + u64::from(p));
            let mut evs = events(&mut rng, 200, 50, &cfg);
            evs.extend(persons_events(&mut rng, 30, 200, &cfg));
            let without = batched(&cfg, p, &evs, 16, 8, 0);
            assert!(check(&without.0, &cfg).is_empty(), "P={p} seed={seed}: {:?}", check(&without.0, &cfg));
            assert_eq!(without.3, 0);
            // A bucket (193 bytes) or two per partition, then plenty.
            for bytes in [400 * usize::from(p), 1 << 20] {
                let with = batched(&cfg, p, &evs, 16, 8, bytes);
                assert!(with.0.idents == without.0.idents, "P={p} seed={seed} owner cache {bytes}: identifier records differ");
                assert!(with.0.profiles == without.0.profiles, "P={p} seed={seed} owner cache {bytes}: profile records differ");
                assert_eq!(with.1, without.1, "P={p} seed={seed} owner cache {bytes}: outputs differ");
                assert_eq!(with.2, without.2, "P={p} seed={seed} owner cache {bytes}: counters differ");
                hits += with.3;
            }
        }
    }
    assert!(hits > 1000, "the owner cache must answer routes in this test ({hits} answers)");
}
