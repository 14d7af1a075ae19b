//! # idgraph-core — the pure identity core
//!
//! No I/O, no clock, no randomness, no threads: the same commands in the same
//! order give byte-identical state and outputs.
//!
//! # Layout
//! - [`ident`]: identifier types and keys (values redacted in `Debug`/`Display`).
//! - [`normalize`]: per-type normalisation, validation and blocked values.
//! - [`rules`]: merge rules (limits, priorities, size cap, shared threshold)
//!   and trait survivorship.
//! - [`config`]: the core's configuration (types, rules, survivorship).
//! - [`time`]: RFC 3339 parsing and formatting (milliseconds since the epoch).
//! - [`profile_id`]: time-ordered deterministic profile IDs.
//! - [`event`]: the normalised touchpoint every input format is mapped to.
//! - [`input`]: canonical and Segment-spec JSON parsers.
//! - [`record`]: persisted identifier and profile records.
//! - [`fragment`]: per-anchor metrics, trait candidates and consent; folding.
//! - [`golden`]: rendering a golden profile from a record.
//! - [`command`]: commands exchanged between partitions.
//! - [`output`]: output events (profiles, lifecycle, consent).
//! - [`partition`]: the deterministic partition state machine.
//! - [`split`]: connected components over a profile's edges.
//! - [`short`]: short strings held inline (event IDs, sources, names).
//! - [`packed`]: text in binary encodings, canonical UUIDs in 16 bytes.
//! - [`cluster`]: P partitions over an in-memory bus, run to quiescence.
//! - [`invariants`]: checks of the rules and ownership over a whole state.

pub mod cluster;
pub mod command;
pub mod config;
pub mod event;
pub mod fragment;
pub mod golden;
pub mod ident;
pub mod input;
pub mod invariants;
pub mod normalize;
pub mod output;
pub mod packed;
pub mod partition;
pub mod phone;
pub mod prefetch;
pub mod profile_id;
pub mod record;
pub mod rules;
pub mod short;
pub mod split;
pub mod time;

/// Stable 64-bit hash used for partitioning and IDs (xxh3, seed 0).
pub fn stable_hash(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

/// `n` in decimal ASCII digits, written at the end of `buf` (what `{}`
/// writes, without a formatter).
pub fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// The partition a key hashes to.
pub fn partition_of(hash: u64, partitions: u16) -> u16 {
    // Multiply-shift keeps the distribution uniform for any P.
    ((u128::from(hash) * u128::from(partitions)) >> 64) as u16
}
