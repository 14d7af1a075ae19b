//! # idgraph-state — the identity state on a [`idgraph_store::Store`]
//!
//! Shared by `replay` and the streaming engine: both persist the partitions
//! of the core the same way.
//!
//! # Layout
//! - [`layout`]: key encoding, the loader the partitions read through,
//!   dirty-record writes, meta records, whole-state scans.
//! - [`known`]: a Bloom filter of the stored keys (reads of new keys skip
//!   RocksDB).
//! - [`types`]: the custom identifier types a state holds, by number.

pub mod known;
pub mod layout;
pub mod types;

pub use known::KnownKeys;
pub use layout::*;
pub use types::{check_types, recorded_types};
