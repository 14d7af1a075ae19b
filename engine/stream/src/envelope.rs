//! The framing of records on `idgraph.cmd` (ADR 0003): a format byte, then
//! a postcard-encoded [`Envelope`].

use idgraph_core::command::Command;
use idgraph_core::event::Touchpoint;
use serde::{Deserialize, Serialize};

/// 2: `Input` carries the oldest input timestamp. 3: `Internal` carries
/// the input timestamp each command descends from (and the first format
/// byte whose `Repoint` carries an ownership epoch, ADR 0002: that came
/// with the epochs, before the byte was raised). 4: profiles inside
/// commands are in record format 3 (anchors as positions); format 3
/// envelopes, whose profiles hold the keys, decode alike. 5: canonical
/// UUIDs packed (record format 4); format 3 and 4 envelopes decode alike.
const FORMAT: u8 = 5;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Envelope {
    /// Events read from one input partition, with their offsets (ascending);
    /// `oldest_ms`: the timestamp of the oldest input record among them (ms
    /// since the epoch, 0 if unknown), for the event-to-output latency.
    Input { topic: String, partition: i32, oldest_ms: i64, items: Vec<(i64, Touchpoint)> },
    /// Commands from partition `from`, numbered from `first_seq` on;
    /// `origins[i]`: the input time `cmds[i]` descends from (the `oldest_ms`
    /// of the envelope that brought its event; ms since the epoch, 0 if
    /// unknown), so the latency counts every hop an event takes.
    Internal { from: u16, first_seq: u64, origins: Vec<i64>, cmds: Vec<Command> },
}

pub fn encode(e: &Envelope) -> Vec<u8> {
    let mut out = vec![FORMAT];
    // Serialising owned, finite data into a Vec cannot fail.
    out.extend(postcard::to_stdvec(e).unwrap_or_default());
    out
}

pub fn decode(b: &[u8]) -> Result<Envelope, String> {
    match b.split_first() {
        Some((&(3 | 4 | FORMAT), rest)) => postcard::from_bytes(rest).map_err(|e| e.to_string()),
        Some((f, _)) => Err(format!("unknown envelope format {f}")),
        None => Err("empty envelope".into()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use idgraph_core::ident::{IdentKey, IdentType};

    #[test]
    fn round_trip_and_bad_bytes() {
        let k = IdentKey::new(IdentType::EMAIL, "a@b.c");
        let u = IdentKey::new(IdentType::ANONYMOUS_ID, "6d92078a-8246-4ba4-ae5b-76104861e7dc");
        let e = Envelope::Internal {
            from: 3,
            first_seq: 7,
            origins: vec![1_700_000_000_000],
            cmds: vec![
                Command::RecordRefusal { ident: k.clone(), with: idgraph_core::profile_id::ProfileId([1; 16]), at: 5 },
                Command::RecordRefusal { ident: u, with: idgraph_core::profile_id::ProfileId([2; 16]), at: 6 },
            ],
        };
        assert_eq!(decode(&encode(&e)).unwrap(), e);
        // Format 3 (before record format 3) reads alike.
        let mut old = encode(&e);
        old[0] = 3;
        assert_eq!(decode(&old).unwrap(), e);
        assert!(decode(&[]).is_err());
        assert!(decode(&[9, 1, 2]).unwrap_err().contains("format 9"));
        assert!(decode(&[FORMAT, 0xFF, 0xFF]).is_err());
    }
}
