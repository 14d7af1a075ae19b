//! RocksDB implementation of [`Store`].
//!
//! Tuned for point lookups of small records: bloom filters on every level
//! but the last (reads are of keys the store holds),
//! index and filter blocks held by the open table readers (growing with
//! the state), small uncompressed blocks. Point
//! reads do not put data blocks in the bounded LRU block cache (the
//! callers cache the decoded records); scans do.

use crate::{Batch, Cf, Store, StoreError};
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBCompressionType, DataBlockIndexType, Options, ReadOptions, WriteBatch,
    WriteOptions, DB,
};
use std::path::{Path, PathBuf};

/// Data block size: a point read that misses the caches reads and
/// decompresses one block.
const BLOCK_SIZE: usize = 2 << 10;

/// Tuning knobs (the `[state]` config section maps onto these).
#[derive(Debug, Clone)]
pub struct RocksOptions {
    /// Shared block cache, bytes.
    pub block_cache_bytes: usize,
    /// Memtable size per family, bytes.
    pub write_buffer_bytes: usize,
    /// Background compaction and flush threads.
    pub background_jobs: i32,
    /// Write-ahead log. Without it (a caller that can redo its input from
    /// the position stored with the state: replay), a crash loses the
    /// writes since the last memtable flush, and the families are flushed
    /// together, so the state that survives is one consistent batch
    /// boundary of all of them.
    pub wal: bool,
}

impl Default for RocksOptions {
    fn default() -> Self {
        Self { block_cache_bytes: 256 << 20, write_buffer_bytes: 64 << 20, background_jobs: 2, wal: true }
    }
}

pub struct RocksStore {
    db: DB,
    path: PathBuf,
    write_opts: WriteOptions,
    read_opts: ReadOptions,
}

impl std::fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStore").field("path", &self.path).finish()
    }
}

fn engine(op: &'static str) -> impl Fn(rocksdb::Error) -> StoreError {
    move |e| StoreError::Engine { op, reason: e.into_string() }
}

impl RocksStore {
    /// Opens (creating if missing) for reading and writing. One process at a
    /// time: a second `open` of the same path fails with a user error.
    pub fn open(path: &Path, o: &RocksOptions) -> Result<Self, StoreError> {
        Self::open_mode(path, o, false)
    }

    /// Opens an existing store for queries, beside a running writer.
    pub fn open_read_only(path: &Path, o: &RocksOptions) -> Result<Self, StoreError> {
        if !path.join("CURRENT").exists() {
            return Err(StoreError::Open {
                path: path.display().to_string(),
                reason: "no state store here (run `idgraph replay` first)".into(),
            });
        }
        Self::open_mode(path, o, true)
    }

    fn open_mode(path: &Path, o: &RocksOptions, read_only: bool) -> Result<Self, StoreError> {
        let cache = Cache::new_lru_cache(o.block_cache_bytes);
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&cache);
        table.set_bloom_filter(10.0, false);
        // Index and filter blocks live with each open table reader, loaded
        // once when the file opens. In the block cache they would be read
        // from the file again on every lookup: point reads do not fill the
        // cache (below), and that applies to filter blocks too, so a full
        // filter of a large file was copied and parsed per lookup (8% of a
        // 10M-event replay). Their memory is the index (a fraction of a
        // byte per key) and 10 bits a key for tables above the last level
        // (no filter there, below), outside the block cache: it grows
        // with the state, and past `max_open_files` table files readers
        // are reopened and their blocks loaded again.
        table.set_cache_index_and_filter_blocks(false);
        table.set_format_version(5);
        // Point lookups read one block each: keep them
        // small, and find the key inside by hash, not binary search.
        table.set_block_size(BLOCK_SIZE);
        table.set_data_block_index_type(DataBlockIndexType::BinaryAndHash);
        table.set_data_block_hash_ratio(0.75);

        let cf_opts = |cf: Cf| {
            let mut c = Options::default();
            c.set_block_based_table_factory(&table);
            c.set_write_buffer_size(if cf == Cf::Meta { 4 << 20 } else { o.write_buffer_bytes });
            c.set_max_write_buffer_number(2);
            // Keys arrive in random order, so every compaction of level 0
            // into the level below rewrites most of that level: let 32
            // level-0 files gather first (4 by default), so each rewrite
            // carries eight times the new data. Lookups probe more level-0
            // blooms. 10M-event replay: compaction CPU 92.9 -> 37.3 s at
            // 16; 32 once the owner cache had taken 40% of the reads away,
            // alternating: 100,331 / 100,412 events/s against 91,892 /
            // 98,192, 180 / 181 CPU-s against 197 / 186.
            c.set_level_zero_file_num_compaction_trigger(32);
            c.set_level_zero_slowdown_writes_trigger(56);
            c.set_level_zero_stop_writes_trigger(72);
            c.set_level_compaction_dynamic_level_bytes(true);
            // A lookup of a key the memtables lack (most: reads are of
            // records written before) is answered by a bloom filter
            // without walking the skip list. The known-keys filter turns
            // away absent keys before any read, so the filter can be small:
            // 0.5% of the memtable against 10% left throughput unchanged
            // and peak RSS 15 MiB lower (10M events, P=1).
            c.set_memtable_whole_key_filtering(true);
            c.set_memtable_prefix_bloom_ratio(0.005);
            // No compression. Records are small and their keys random, so
            // a block compresses little (LZ4 on profiles saved 15% of the
            // state), and it cost an LZ4 pass in every flush and
            // compaction (~30% of those threads) and a decompression in
            // every point read. 10M-event replay, alternating with LZ4 on
            // profiles: 115,473 / 113,980 events/s against 109,506 /
            // 108,927; state 1.84 -> 2.15 GB at that run's end (181 bytes
            // per identifier; 186 in `make bench-core`, measured after
            // its final flush). Identifier records were uncompressed
            // already. RocksDB stays built with LZ4: states written before
            // hold LZ4 blocks until compaction rewrites them.
            c.set_compression_type(DBCompressionType::None);
            c.set_bottommost_compression_type(DBCompressionType::None);
            // The replay's and the engine's point reads are of keys the
            // store holds (the known-keys filter answers for absent ones
            // first), so a bloom filter on the last level, where most keys
            // are, would answer "maybe" and cost its memory (10 bits a
            // key) for nothing. Reads that skip that filter (`idgraph
            // lookup`, `explain`, meta records) pay an index search and a
            // block read for a key that is absent: rare, one at a time.
            c.set_optimize_filters_for_hits(true);
            c
        };
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_max_background_jobs(o.background_jobs);
        db_opts.set_max_open_files(512);
        db_opts.set_keep_log_file_num(3);
        db_opts.set_atomic_flush(!o.wal);
        // Flushes and compactions run below the threads that process
        // events (nice 19): on a machine with fewer cores than busy threads
        // the partition's thread, which every event waits on, otherwise
        // queued behind them (14 s of a 10M-event replay spent runnable
        // but not running). They still take every idle moment; level 0
        // grows a little further ahead of compaction. 10M events, P=1,
        // alternating: 129,646 / 124,786 events/s against 110,075 /
        // 122,865 (docs/BENCHMARKS.md).
        let open_failed = |e: rocksdb::Error| StoreError::Open { path: path.display().to_string(), reason: e.into_string() };
        let mut env = rocksdb::Env::new().map_err(open_failed)?;
        env.lower_thread_pool_cpu_priority();
        env.lower_high_priority_thread_pool_cpu_priority();
        db_opts.set_env(&env);
        let cfs = Cf::ALL.iter().map(|cf| ColumnFamilyDescriptor::new(cf.name(), cf_opts(*cf)));
        let db = if read_only {
            DB::open_cf_descriptors_read_only(&db_opts, path, cfs, false)
        } else {
            DB::open_cf_descriptors(&db_opts, path, cfs)
        };
        let db = db.map_err(open_failed)?;
        let mut write_opts = WriteOptions::default();
        // The WAL survives a process kill; `flush` syncs for power loss.
        write_opts.set_sync(false);
        write_opts.disable_wal(!o.wal);
        // Point reads do not fill the block cache with data blocks: the
        // partitions keep what they read decoded in their own cache, so a
        // second copy of the block (2 KiB for one record)
        // costs an insert and an eviction per read and memory that the
        // record cache uses better.
        let mut read_opts = ReadOptions::default();
        read_opts.fill_cache(false);
        Ok(Self { db, path: path.to_path_buf(), write_opts, read_opts })
    }

    fn cf(&self, cf: Cf) -> Result<&rocksdb::ColumnFamily, StoreError> {
        self.db.cf_handle(cf.name()).ok_or(StoreError::Engine { op: "open column family", reason: format!("missing family {}", cf.name()) })
    }

    /// Every family's handle, indexed by `Cf::index` (`Cf::ALL` is in
    /// that order).
    fn handles(&self) -> Result<Vec<&rocksdb::ColumnFamily>, StoreError> {
        Cf::ALL.iter().map(|cf| self.cf(*cf)).collect()
    }

    /// An integer RocksDB property summed over the families (for metrics).
    pub fn property(&self, name: &str) -> u64 {
        Cf::ALL.iter().filter_map(|cf| self.cf(*cf).ok()).filter_map(|h| self.db.property_int_value_cf(h, name).ok().flatten()).sum()
    }
}

impl Store for RocksStore {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.db.get_cf_opt(self.cf(cf)?, key, &self.read_opts).map_err(engine("get"))
    }

    fn multi_get_with(&self, cf: Cf, keys: &[Vec<u8>], f: &mut dyn FnMut(usize, Option<&[u8]>)) -> Result<(), StoreError> {
        let h = self.cf(cf)?;
        // Handed over in key order, which RocksDB needs and otherwise
        // sorts for itself through its comparator (3% of the replay's
        // main thread).
        let order = crate::key_order(keys.len(), |i| (0, keys[i].as_slice()));
        let sorted = order.iter().map(|&i| &keys[i]);
        for (&i, r) in order.iter().zip(self.db.batched_multi_get_cf_opt(h, sorted, true, &self.read_opts)) {
            f(i, r.map_err(engine("multi_get"))?.as_deref());
        }
        Ok(())
    }

    fn write(&self, batch: Batch) -> Result<(), StoreError> {
        let handles = self.handles()?;
        // Sized up front: grown by doubling, the batch's buffer (megabytes
        // per replay batch) was copied over and over as it filled.
        let bytes = batch.bytes() + 16 * batch.op_count();
        let mut wb = WriteBatch::with_capacity_bytes(bytes + 64);
        for (cf, prefix) in &batch.prefix_deletes {
            let h = handles[cf.index()];
            match crate::prefix_end(prefix) {
                Some(end) => wb.delete_range_cf(h, prefix.as_slice(), end.as_slice()),
                None => return Err(StoreError::Engine { op: "delete prefix", reason: "the prefix has no upper bound (all 0xFF)".into() }),
            }
        }
        // Sorted inserts let the memtable skip list reuse its last position
        // (splice) instead of searching from the top for every key.
        for i in crate::sorted_order(&batch) {
            let op = batch.op(i);
            let h = handles[op.cf.index()];
            match op.value {
                Some(v) => wb.put_cf(h, op.key, v),
                None => wb.delete_cf(h, op.key),
            }
        }
        self.db.write_opt(wb, &self.write_opts).map_err(engine("write"))
    }

    fn scan(&self, cf: Cf, prefix: &[u8], f: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<(), StoreError> {
        let it = self.db.iterator_cf(self.cf(cf)?, rocksdb::IteratorMode::From(prefix, rocksdb::Direction::Forward));
        for item in it {
            let (k, v) = item.map_err(engine("scan"))?;
            if !k.starts_with(prefix) || !f(&k, &v) {
                break;
            }
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        // All families in one flush: without a WAL, they must reach the
        // table files at the same batch boundary.
        self.db.flush_cfs_opt(&self.handles()?, &rocksdb::FlushOptions::default()).map_err(engine("flush"))?;
        self.db.flush_wal(true).map_err(engine("flush"))
    }

    fn disk_bytes(&self) -> Option<u64> {
        Some(self.property("rocksdb.total-sst-files-size"))
    }
}
