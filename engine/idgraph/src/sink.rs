//! Output streams of `replay`: one NDJSON file per topic in the out dir.
//!
//! Exactly-once across crashes: each batch's lines are written and flushed
//! before the state commit, and the commit records every file's length. On
//! start each file is cut back to its committed length, so a batch that
//! crashed before its commit is written again, identically, by its replay.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
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

#[derive(Debug)]
pub struct Sinks {
    files: Vec<BufWriter<File>>,
    lens: Vec<u64>,
}

impl Sinks {
    /// Opens `dir/<stream>.ndjson`, cut to the committed lengths.
    pub fn open(dir: &Path, committed: &[u64; 4]) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut files = Vec::new();
        for (i, s) in STREAMS.iter().enumerate() {
            let p = dir.join(format!("{s}.ndjson"));
            let f = OpenOptions::new().create(true).truncate(false).write(true).open(&p)?;
            f.set_len(committed[i])?;
            let mut w = BufWriter::with_capacity(1 << 20, f);
            std::io::Seek::seek(w.get_mut(), std::io::SeekFrom::End(0))?;
            files.push(w);
        }
        Ok(Self { files, lens: committed.to_vec() })
    }

    pub fn line(&mut self, s: Stream, line: &str) -> std::io::Result<()> {
        let w = &mut self.files[s as usize];
        w.write_all(line.as_bytes())?;
        w.write_all(b"\n")?;
        self.lens[s as usize] += line.len() as u64 + 1;
        Ok(())
    }

    /// Flushes to the OS and returns the lengths to commit.
    pub fn flush(&mut self) -> std::io::Result<[u64; 4]> {
        for w in &mut self.files {
            w.flush()?;
        }
        let mut out = [0u64; 4];
        out.copy_from_slice(&self.lens);
        Ok(out)
    }
}
