//! A [`Batch`] encoded the way RocksDB encodes a write batch, in one pass.
//!
//! Built through RocksDB's own calls, a batch cost one foreign call and
//! a string append per write on top of the encoding the batch already
//! holds (9% of the replay's writer thread). Here every write is
//! appended to one buffer, in key order, in RocksDB's format:
//!
//! ```text
//! sequence: fixed64 (0; the write sets it)   count: fixed32
//! record:   tag [family: varint32] key: varstring [value: varstring]
//! ```
//!
//! with the tags of RocksDB's `dbformat.h` (a put, a delete and a range
//! delete, each with or without a family ID, the default family having
//! none). The format is RocksDB's internal one, so [`RepEncoder::probe`]
//! learns each family's ID from a batch RocksDB builds and checks, when the
//! store opens, that a sample batch encodes here to exactly the bytes
//! RocksDB's calls produce; if not, the store builds batches through those
//! calls as before.

use crate::{Batch, Cf, StoreError};
use rocksdb::{ColumnFamily, WriteBatch};

const HEADER: usize = 12;
const PUT: u8 = 0x01;
const DELETE: u8 = 0x00;
const RANGE_DELETE: u8 = 0x0F;
const CF_PUT: u8 = 0x05;
const CF_DELETE: u8 = 0x04;
const CF_RANGE_DELETE: u8 = 0x0E;

/// Encodes batches for one open store (its families' IDs).
#[derive(Debug, Clone)]
pub(crate) struct RepEncoder {
    /// By [`Cf::index`].
    ids: Vec<u32>,
}

fn varint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varstring(out: &mut Vec<u8>, s: &[u8]) -> Result<(), StoreError> {
    let len =
        u32::try_from(s.len()).map_err(|_| StoreError::Engine { op: "write", reason: format!("a key or value of {} bytes", s.len()) })?;
    varint(out, len);
    out.extend_from_slice(s);
    Ok(())
}

/// Reads a varint32 at the start of `b`: the value and its length.
fn read_varint(b: &[u8]) -> Option<(u32, usize)> {
    let mut v = 0u32;
    for (i, &x) in b.iter().enumerate().take(5) {
        v |= u32::from(x & 0x7F) << (7 * i);
        if x < 0x80 {
            return Some((v, i + 1));
        }
    }
    None
}

/// The batch built through RocksDB's own calls: range deletes first, then
/// every write in key order (sorted inserts let the memtable skip list
/// reuse its last position instead of searching from the top).
pub(crate) fn via_api(batch: &Batch, handles: &[&ColumnFamily]) -> Result<WriteBatch, StoreError> {
    let bytes = batch.bytes() + 16 * batch.op_count();
    let mut wb = WriteBatch::with_capacity_bytes(bytes + 64);
    for (cf, prefix) in &batch.prefix_deletes {
        let h = handles[cf.index()];
        let end = crate::prefix_end(prefix)
            .ok_or_else(|| StoreError::Engine { op: "delete prefix", reason: "the prefix has no upper bound (all 0xFF)".into() })?;
        wb.delete_range_cf(h, prefix.as_slice(), end.as_slice());
    }
    for i in crate::sorted_order(batch) {
        let op = batch.op(i);
        let h = handles[op.cf.index()];
        match op.value {
            Some(v) => wb.put_cf(h, op.key, v),
            None => wb.delete_cf(h, op.key),
        }
    }
    Ok(wb)
}

impl RepEncoder {
    /// The encoder for these families (by [`Cf::index`]), or `None` when
    /// RocksDB's encoding is not the one this module writes.
    pub(crate) fn probe(handles: &[&ColumnFamily]) -> Option<Self> {
        let mut ids = Vec::with_capacity(handles.len());
        for h in handles {
            let mut wb = WriteBatch::default();
            wb.put_cf(*h, b"k", b"v");
            let d = wb.data();
            let id = match *d.get(HEADER)? {
                CF_PUT => read_varint(d.get(HEADER + 1..)?)?.0,
                PUT => 0,
                _ => return None,
            };
            ids.push(id);
        }
        let enc = Self { ids };
        let mut sample = Batch::default();
        for (i, cf) in Cf::ALL.iter().enumerate() {
            sample.put(*cf, [0x80 + i as u8; 200], b"value");
            sample.put(*cf, b"a", [7u8; 300]);
            sample.delete(*cf, b"b");
            sample.put(*cf, b"", b"");
            sample.delete_prefix(*cf, vec![i as u8, 0xFF]);
        }
        let api = via_api(&sample, handles).ok()?;
        (enc.encode(&sample).ok()? == api.data()).then_some(enc)
    }

    /// The batch in RocksDB's encoding, writes in the order of
    /// [`via_api`].
    pub(crate) fn encode(&self, batch: &Batch) -> Result<Vec<u8>, StoreError> {
        let mut out = Vec::with_capacity(HEADER + batch.bytes() + 8 * batch.op_count() + 64);
        out.resize(HEADER, 0);
        let count =
            u32::try_from(batch.len()).map_err(|_| StoreError::Engine { op: "write", reason: "too many writes in one batch".into() })?;
        out[8..HEADER].copy_from_slice(&count.to_le_bytes());
        let tag = |out: &mut Vec<u8>, cf: Cf, plain: u8, with_id: u8| match self.ids[cf.index()] {
            0 => out.push(plain),
            id => {
                out.push(with_id);
                varint(out, id);
            }
        };
        for (cf, prefix) in &batch.prefix_deletes {
            let end = crate::prefix_end(prefix)
                .ok_or_else(|| StoreError::Engine { op: "delete prefix", reason: "the prefix has no upper bound (all 0xFF)".into() })?;
            tag(&mut out, *cf, RANGE_DELETE, CF_RANGE_DELETE);
            varstring(&mut out, prefix)?;
            varstring(&mut out, &end)?;
        }
        for i in crate::sorted_order(batch) {
            let op = batch.op(i);
            match op.value {
                Some(v) => {
                    tag(&mut out, op.cf, PUT, CF_PUT);
                    varstring(&mut out, op.key)?;
                    varstring(&mut out, v)?;
                }
                None => {
                    tag(&mut out, op.cf, DELETE, CF_DELETE);
                    varstring(&mut out, op.key)?;
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_read_back() {
        for v in [0, 1, 127, 128, 300, 16_383, 16_384, u32::MAX] {
            let mut b = Vec::new();
            varint(&mut b, v);
            assert_eq!(read_varint(&b), Some((v, b.len())), "{v}");
        }
        assert_eq!(read_varint(&[0x80, 0x80]), None);
    }
}
