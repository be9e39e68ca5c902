//! Opaque page cursors: base64url of a small binary struct with a keyed checksum.
//!
//! A cursor carries the position, the sort order, the time bounds of the walk that created it,
//! the org it belongs to, the cursor generation (bumped to expire every cursor) and its issue time
//! (for the optional TTL). Anything that does not decode, fails the checksum, belongs to another
//! org or generation, or is too old is rejected with `400 ADMIN-400-1`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Which endpoint a cursor belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CursorKind {
    /// `/events-stream`: `pos` is an index into the processedAt-ordered store.
    Stream = 1,
    /// `/events`: `pos` is the store index of the last event served, `key` its time.
    Query = 2,
}

/// Decoded cursor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    /// Endpoint.
    pub kind: CursorKind,
    /// Descending order.
    pub desc: bool,
    /// Position (meaning depends on `kind` and order).
    pub pos: u64,
    /// Secondary key (the `time` of the last event for `/events`).
    pub key: i64,
    /// Inclusive lower time bound of the walk (`i64::MIN` = none).
    pub from: i64,
    /// Inclusive upper time bound of the walk (`i64::MAX` = none).
    pub to: i64,
    /// Org index.
    pub org: u32,
    /// Cursor generation at issue time.
    pub generation: u32,
    /// Issue time (epoch ms of the simulator clock).
    pub issued_ms: i64,
}

const VERSION: u8 = 1;
const LEN: usize = 1 + 1 + 1 + 8 + 8 + 8 + 8 + 4 + 4 + 8 + 8;

fn checksum(secret: u64, data: &[u8]) -> u64 {
    // FNV-1a keyed with a per-simulator secret: not cryptographic, just enough that a hand-made
    // or corrupted cursor is rejected.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ secret;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl Cursor {
    /// Encodes to the opaque string.
    pub fn encode(&self, secret: u64) -> String {
        let mut b = Vec::with_capacity(LEN);
        b.push(VERSION);
        b.push(self.kind as u8);
        b.push(u8::from(self.desc));
        b.extend_from_slice(&self.pos.to_be_bytes());
        b.extend_from_slice(&self.key.to_be_bytes());
        b.extend_from_slice(&self.from.to_be_bytes());
        b.extend_from_slice(&self.to.to_be_bytes());
        b.extend_from_slice(&self.org.to_be_bytes());
        b.extend_from_slice(&self.generation.to_be_bytes());
        b.extend_from_slice(&self.issued_ms.to_be_bytes());
        let c = checksum(secret, &b);
        b.extend_from_slice(&c.to_be_bytes());
        URL_SAFE_NO_PAD.encode(b)
    }

    /// Decodes; `None` when the string is not a cursor this simulator issued.
    pub fn decode(s: &str, secret: u64) -> Option<Cursor> {
        let b = URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok()?;
        if b.len() != LEN || b[0] != VERSION {
            return None;
        }
        let (body, sum) = b.split_at(LEN - 8);
        if checksum(secret, body) != u64::from_be_bytes(sum.try_into().ok()?) {
            return None;
        }
        let u64_at = |o: usize| -> Option<u64> {
            Some(u64::from_be_bytes(b.get(o..o + 8)?.try_into().ok()?))
        };
        let u32_at = |o: usize| -> Option<u32> {
            Some(u32::from_be_bytes(b.get(o..o + 4)?.try_into().ok()?))
        };
        let kind = match b[1] {
            1 => CursorKind::Stream,
            2 => CursorKind::Query,
            _ => return None,
        };
        let desc = match b[2] {
            0 => false,
            1 => true,
            _ => return None,
        };
        Some(Cursor {
            kind,
            desc,
            pos: u64_at(3)?,
            key: u64_at(11)? as i64,
            from: u64_at(19)? as i64,
            to: u64_at(27)? as i64,
            org: u32_at(35)?,
            generation: u32_at(39)?,
            issued_ms: u64_at(43)? as i64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn roundtrip(pos in any::<u64>(), key in any::<i64>(), from in any::<i64>(), to in any::<i64>(),
                     org in any::<u32>(), generation in any::<u32>(), issued in any::<i64>(), desc in any::<bool>(), q in any::<bool>()) {
            let c = Cursor { kind: if q { CursorKind::Query } else { CursorKind::Stream }, desc, pos, key, from, to, org, generation, issued_ms: issued };
            let s = c.encode(99);
            prop_assert!(s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            prop_assert_eq!(Cursor::decode(&s, 99), Some(c));
            prop_assert_eq!(Cursor::decode(&s, 98), None);
        }

        #[test]
        fn garbage_is_rejected(s in ".{0,80}") {
            let _ = Cursor::decode(&s, 1);
        }
    }

    #[test]
    fn tampering_is_detected() {
        let c = Cursor {
            kind: CursorKind::Stream,
            desc: false,
            pos: 5,
            key: 0,
            from: i64::MIN,
            to: i64::MAX,
            org: 0,
            generation: 0,
            issued_ms: 0,
        };
        let s = c.encode(1);
        let mut b = URL_SAFE_NO_PAD.decode(&s).unwrap();
        b[5] ^= 1;
        assert_eq!(Cursor::decode(&URL_SAFE_NO_PAD.encode(b), 1), None);
        assert_eq!(Cursor::decode("c2ltLXBhZ2UtMg", 1), None);
        assert_eq!(Cursor::decode("", 1), None);
    }
}
