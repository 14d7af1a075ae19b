//! What a core partition keeps beside its records, under its own key
//! prefix `partition | 0xFE | name`: its stream position and de-dup marks
//! ([`PartMeta`], written with every batch and carried by the changelog
//! markers) and where its last delivered changelog marker landed
//! ([`ClPos`], local only).

use idgraph_store::Cf;
use serde::{Deserialize, Serialize};

/// Identifies one batch of one engine run: `token` is drawn per run,
/// `seq` counts the run's batches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BatchId {
    pub token: u64,
    pub seq: u64,
}

impl BatchId {
    pub fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.token.to_be_bytes());
        b[8..].copy_from_slice(&self.seq.to_be_bytes());
        b
    }

    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        let b: &[u8; 16] = b.try_into().ok()?;
        let (t, s) = b.split_at(8);
        Some(Self { token: u64::from_be_bytes(t.try_into().ok()?), seq: u64::from_be_bytes(s.try_into().ok()?) })
    }
}

/// What a partition needs to resume and to drop duplicates.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PartMeta {
    /// Next `idgraph.cmd` offset to consume.
    pub cmd_offset: i64,
    /// Highest applied offset per input (topic, partition).
    pub inputs: Vec<(String, i32, i64)>,
    /// Highest applied sequence per sender partition (0: none; sequences
    /// start at 1).
    pub applied: Vec<u64>,
    /// Last sequence sent per receiver partition.
    pub sent: Vec<u64>,
    /// The batch that wrote this meta (default: none yet).
    pub batch: BatchId,
}

impl PartMeta {
    pub fn new(partitions: u16) -> Self {
        Self {
            cmd_offset: 0,
            inputs: Vec::new(),
            applied: vec![0; partitions as usize],
            sent: vec![0; partitions as usize],
            batch: BatchId::default(),
        }
    }

    pub fn input_mark(&mut self, topic: &str, partition: i32) -> &mut i64 {
        let i = match self.inputs.iter().position(|(t, p, _)| t == topic && *p == partition) {
            Some(i) => i,
            None => {
                self.inputs.push((topic.to_string(), partition, -1));
                self.inputs.len() - 1
            }
        };
        &mut self.inputs[i].2
    }
}

/// The changelog offset of the last marker of this partition that the
/// broker acknowledged, and the batch it closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClPos {
    pub batch: BatchId,
    pub offset: i64,
}

/// The key prefix of a partition's own meta records (in [`Cf::Meta`]).
pub fn part_prefix(p: u16) -> Vec<u8> {
    let mut k = p.to_be_bytes().to_vec();
    k.push(0xFE);
    k
}

pub fn part_meta_key(p: u16) -> Vec<u8> {
    let mut k = part_prefix(p);
    k.extend_from_slice(b"stream");
    k
}

pub fn clpos_key(p: u16) -> Vec<u8> {
    let mut k = part_prefix(p);
    k.extend_from_slice(b"clpos");
    k
}

/// Every family's key prefix that holds partition `p`'s state.
pub fn partition_prefixes(p: u16) -> [(Cf, Vec<u8>); 3] {
    [(Cf::Idents, p.to_be_bytes().to_vec()), (Cf::Profiles, p.to_be_bytes().to_vec()), (Cf::Meta, part_prefix(p))]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_ids_round_trip() {
        let id = BatchId { token: 0xDEAD_BEEF_0000_0001, seq: 42 };
        assert_eq!(BatchId::from_bytes(&id.to_bytes()), Some(id));
        assert_eq!(BatchId::from_bytes(&[1, 2, 3]), None);
    }

    #[test]
    fn partition_meta_keys_stay_in_their_prefix() {
        assert!(part_meta_key(3).starts_with(&part_prefix(3)));
        assert!(clpos_key(3).starts_with(&part_prefix(3)));
        assert!(!part_meta_key(3).starts_with(&part_prefix(4)));
        // Global meta (0xFFFF...) is never inside a partition's prefix.
        assert!(!idgraph_state::meta_key("outbox/").starts_with(&part_prefix(0xFFFF)));
    }
}
