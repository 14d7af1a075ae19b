//! Output streams of `replay`: one NDJSON file per topic in the out dir.
//!
//! Exactly-once across crashes: each batch's lines are written and flushed
//! before the state commit, and the commit records every file's length. On
//! start each file is cut back to its committed length, so a batch that
//! crashed before its commit is written again, identically, by its replay.
//!
//! Whole blocks go to the file with `O_DIRECT`, from a block-aligned buffer:
//! a 10M-event replay writes ~7 GB of output, and copying it into the page
//! cache cost its writer thread ~16 CPU-seconds (plus the kernel's
//! write-back), with both cores busy. A flush writes the whole blocks
//! directly and the unaligned tail through an ordinary handle, so the file
//! always ends exactly at the flushed length; the tail stays in the buffer
//! and its block is written again, directly, when it fills. Where the file
//! system refuses `O_DIRECT` (at open, or with `EINVAL` on a write: some
//! network and FUSE file systems, devices with larger blocks), and off
//! Linux, the ordinary handle takes everything.
//!
//! Each flush ends with `fdatasync` of the files it wrote to, before the
//! batch's state commit: whatever state survives (a process crash, or the
//! loss of the machine, which takes the state back to its last memtable
//! flush), the files hold at least its committed lengths. A file found
//! shorter than that at start (cut or replaced by hand) is refused with an
//! error, not padded.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
#[cfg(target_os = "linux")]
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The output streams, named after their topics (without the prefix).
pub const STREAMS: [&str; 4] = ["profiles", "lifecycle", "consent", "rejects"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Profiles = 0,
    Lifecycle = 1,
    Consent = 2,
    Rejects = 3,
}

/// Alignment of direct writes: offset, length and buffer address.
const BLOCK: usize = 4096;
/// Bytes buffered per stream before a write.
const WINDOW: usize = 2 << 20;

/// One output file and its buffer.
#[derive(Debug)]
struct Out {
    /// The `O_DIRECT` handle, when the file system allows one.
    direct: Option<File>,
    file: File,
    /// `WINDOW + BLOCK` bytes; the window is `buf[off..off + WINDOW]`, which
    /// starts on a block boundary.
    buf: Vec<u8>,
    off: usize,
    /// Bytes in the window.
    len: usize,
    /// The file offset of the window's first byte (a block boundary when
    /// writing directly).
    pos: u64,
    /// Bytes appended since the last sync.
    unsynced: bool,
}

impl Out {
    fn open(path: &Path, committed: u64, allow_direct: bool) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).truncate(false).read(true).write(true).open(path)?;
        let found = file.metadata()?.len();
        if found < committed {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{} holds {found} bytes but the state committed {committed}: the file was cut, replaced or lost; \
                     replay into a new state directory and output directory",
                    path.display()
                ),
            ));
        }
        file.set_len(committed)?;
        let direct = if allow_direct { open_direct(path) } else { None };
        let buf = vec![0u8; WINDOW + BLOCK];
        let off = buf.as_ptr().align_offset(BLOCK);
        let mut out = Self { direct, file, buf, off, len: 0, pos: committed, unsynced: false };
        if out.direct.is_some() {
            // Resume inside the last block: its committed bytes are read
            // back, so the next direct write of that block keeps them.
            out.pos = committed / BLOCK as u64 * BLOCK as u64;
            out.len = (committed - out.pos) as usize;
            let (off, len) = (out.off, out.len);
            out.file.read_exact_at(&mut out.buf[off..off + len], out.pos)?;
        }
        Ok(out)
    }

    fn append(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        self.unsynced |= !bytes.is_empty();
        while !bytes.is_empty() {
            let n = bytes.len().min(WINDOW - self.len);
            let at = self.off + self.len;
            self.buf[at..at + n].copy_from_slice(&bytes[..n]);
            self.len += n;
            bytes = &bytes[n..];
            if self.len == WINDOW {
                self.write_out()?;
            }
        }
        Ok(())
    }

    /// Writes the window's whole blocks directly (everything, without a
    /// direct handle) and keeps the rest at the window's start. A direct
    /// write the file system refuses (`EINVAL`: alignment, or no direct
    /// I/O) switches the file to the ordinary handle for good.
    fn write_out(&mut self) -> std::io::Result<()> {
        let whole = match &self.direct {
            Some(d) => {
                let whole = self.len / BLOCK * BLOCK;
                if whole > 0 {
                    if let Err(e) = d.write_all_at(&self.buf[self.off..self.off + whole], self.pos) {
                        if e.raw_os_error() != Some(libc::EINVAL) {
                            return Err(e);
                        }
                        tracing::warn!(error = %e, "direct writes refused for an output file; writing through the page cache");
                        self.direct = None;
                        return self.write_out();
                    }
                }
                whole
            }
            None => {
                self.file.write_all_at(&self.buf[self.off..self.off + self.len], self.pos)?;
                self.len
            }
        };
        self.buf.copy_within(self.off + whole..self.off + self.len, self.off);
        self.pos += whole as u64;
        self.len -= whole;
        Ok(())
    }

    /// Everything appended reaches the device: whole blocks directly, the
    /// tail through the ordinary handle (it stays buffered for its block),
    /// then `fdatasync` (per file, so it covers both handles' writes).
    /// Nothing to do when nothing was appended since the last flush.
    fn flush(&mut self) -> std::io::Result<()> {
        if !self.unsynced {
            return Ok(());
        }
        self.write_out()?;
        if self.len > 0 {
            self.file.write_all_at(&self.buf[self.off..self.off + self.len], self.pos)?;
        }
        self.file.sync_data()?;
        self.unsynced = false;
        Ok(())
    }
}

/// An `O_DIRECT` handle on `path`, if the platform and file system allow.
#[cfg(target_os = "linux")]
fn open_direct(path: &Path) -> Option<File> {
    OpenOptions::new().write(true).custom_flags(libc::O_DIRECT).open(path).ok()
}

#[cfg(not(target_os = "linux"))]
fn open_direct(_: &Path) -> Option<File> {
    None
}

#[derive(Debug)]
pub struct Sinks {
    files: Vec<Out>,
    lens: Vec<u64>,
}

impl Sinks {
    /// Opens `dir/<stream>.ndjson`, cut to the committed lengths.
    pub fn open(dir: &Path, committed: &[u64; 4]) -> std::io::Result<Self> {
        Self::open_with(dir, committed, true)
    }

    fn open_with(dir: &Path, committed: &[u64; 4], allow_direct: bool) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut files = Vec::new();
        for (i, s) in STREAMS.iter().enumerate() {
            files.push(Out::open(&dir.join(format!("{s}.ndjson")), committed[i], allow_direct)?);
        }
        Ok(Self { files, lens: committed.to_vec() })
    }

    pub fn line(&mut self, s: Stream, line: impl AsRef<[u8]>) -> std::io::Result<()> {
        let line = line.as_ref();
        let w = &mut self.files[s as usize];
        w.append(line)?;
        w.append(b"\n")?;
        self.lens[s as usize] += line.len() as u64 + 1;
        Ok(())
    }

    /// Flushes to the device and returns the lengths to commit.
    pub fn flush(&mut self) -> std::io::Result<[u64; 4]> {
        for w in &mut self.files {
            w.flush()?;
        }
        let mut out = [0u64; 4];
        out.copy_from_slice(&self.lens);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(dir: &Path, s: &str) -> Vec<u8> {
        std::fs::read(dir.join(format!("{s}.ndjson"))).unwrap_or_default()
    }

    /// Lines across window and block boundaries, flushes at odd lengths, a
    /// cut back to a committed length inside a block and appends after it:
    /// the file always holds exactly the flushed lines, written directly
    /// where the file system allows it and through the page cache where not.
    #[test]
    fn files_hold_exactly_the_flushed_bytes_across_blocks_and_resumes() -> std::io::Result<()> {
        for direct in [true, false] {
            flushed_bytes(direct)?;
        }
        Ok(())
    }

    fn flushed_bytes(direct: bool) -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let mut want = Vec::new();
        let mut sinks = Sinks::open_with(dir.path(), &[0; 4], direct)?;
        if !direct {
            assert!(sinks.files.iter().all(|f| f.direct.is_none()));
        }
        let mut committed = [0u64; 4];
        for i in 0..40_000usize {
            let line = format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(i % 301));
            sinks.line(Stream::Profiles, &line)?;
            want.extend_from_slice(line.as_bytes());
            want.push(b'\n');
            if i % 997 == 0 {
                committed = sinks.flush()?;
                assert_eq!(committed[0], want.len() as u64);
                assert_eq!(read(dir.path(), "profiles"), want);
            }
        }
        // Lines after the last flush are lost with the process; a restart
        // cuts back to the committed length and appends from there.
        drop(sinks);
        want.truncate(committed[0] as usize);
        assert_ne!(committed[0] % BLOCK as u64, 0, "the test cuts inside a block");
        let mut sinks = Sinks::open_with(dir.path(), &committed, direct)?;
        assert_eq!(read(dir.path(), "profiles"), want);
        for i in 0..5_000usize {
            let line = format!("after {i} {}", "y".repeat(i % 1000));
            sinks.line(Stream::Profiles, &line)?;
            sinks.line(Stream::Lifecycle, "{}")?;
            want.extend_from_slice(line.as_bytes());
            want.push(b'\n');
        }
        let lens = sinks.flush()?;
        assert_eq!(read(dir.path(), "profiles"), want);
        assert_eq!(read(dir.path(), "lifecycle"), b"{}\n".repeat(5_000));
        assert_eq!(lens, [want.len() as u64, 15_000, 0, 0]);
        Ok(())
    }

    /// A file shorter than the state committed (cut by hand, or deleted
    /// with the state kept) is refused, not padded with zeros.
    #[test]
    fn a_file_shorter_than_committed_is_refused() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let mut sinks = Sinks::open(dir.path(), &[0; 4])?;
        sinks.line(Stream::Lifecycle, "{\"kind\":\"merge\"}")?;
        let committed = sinks.flush()?;
        drop(sinks);
        let path = dir.path().join("lifecycle.ndjson");
        std::fs::OpenOptions::new().write(true).open(&path)?.set_len(committed[1] - 1)?;
        let e = Sinks::open(dir.path(), &committed).map(drop).map_err(|e| e.to_string());
        let msg = e.expect_err("a short file must be refused");
        let want = format!("lifecycle.ndjson holds {} bytes but the state committed {}", committed[1] - 1, committed[1]);
        assert!(msg.contains(&want), "{msg}");
        assert_eq!(std::fs::metadata(&path)?.len(), committed[1] - 1, "left as found");
        std::fs::remove_file(&path)?;
        assert!(Sinks::open(dir.path(), &committed).is_err(), "a missing file is as short as an empty one");
        Ok(())
    }
}
