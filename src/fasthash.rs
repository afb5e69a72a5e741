//! A fast hasher for the in-process maps on the request path whose keys a
//! client cannot choose: session ids portico generated (reached only through
//! a cookie portico sealed), sealed cookie values (only stored once they
//! opened, so their bytes came from portico's own encryption), and upstream
//! origins from the config. std's SipHash, built to resist keys chosen to
//! collide, was a measurable part of every proxied request for keys like
//! these; this one reads eight bytes a step.

use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` with [`FastHasher`].
pub type FastMap<K, V> = std::collections::HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// Multiply-rotate over 64-bit words, with a final mix so every bit of the
/// input reaches the low bits (bucket index) and the top bits (hashbrown's
/// control bytes).
#[derive(Default, Clone, Copy)]
pub struct FastHasher(u64);

const SEED: u64 = 0xf135_7aea_2e62_a9c5;

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut eight = [0u8; 8];
            eight.copy_from_slice(word);
            self.add(u64::from_le_bytes(eight));
        }
        let rest = words.remainder();
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        // The length goes in too, so "a" and "a\0" differ.
        self.add(u64::from_le_bytes(last) ^ ((bytes.len() as u64) << 56));
    }

    fn write_u8(&mut self, value: u8) {
        self.add(u64::from(value));
    }

    fn write_usize(&mut self, value: usize) {
        self.add(value as u64);
    }

    fn finish(&self) -> u64 {
        let mut hash = self.0;
        hash ^= hash >> 33;
        hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
        hash ^= hash >> 33;
        hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::{BuildHasher, Hash};

    fn hash_of(value: &str) -> u64 {
        BuildHasherDefault::<FastHasher>::default().hash_one(value)
    }

    #[test]
    fn equal_keys_hash_equal_and_near_keys_apart() {
        assert_eq!(
            hash_of("zwykUaLL2pQfT9sLwhTaAC"),
            hash_of("zwykUaLL2pQfT9sLwhTaAC")
        );
        let mut seen = std::collections::HashSet::new();
        for text in [
            "",
            "a",
            "a\0",
            "b",
            "ab",
            "ba",
            "abcdefgh",
            "abcdefgh\0",
            "abcdefghi",
        ] {
            assert!(seen.insert(hash_of(text)), "{text:?} collides");
        }
    }

    #[test]
    fn bucket_bits_spread_over_similar_keys() {
        // Session-id-like keys differing in one character must not pile up
        // in a few buckets (low bits) or share control bytes (top bits).
        let mut low = std::collections::HashSet::new();
        let mut top = std::collections::HashSet::new();
        for index in 0..256u32 {
            let key = format!("session-{index:04}-abcdefghijklmnop");
            let mut hasher = FastHasher::default();
            key.hash(&mut hasher);
            let hash = hasher.finish();
            low.insert(hash & 0xff);
            top.insert(hash >> 57);
        }
        assert!(low.len() > 140, "only {} of 256 low-byte values", low.len());
        assert!(top.len() > 90, "only {} of 128 top-7-bit values", top.len());
    }

    #[test]
    fn a_map_works_with_it() {
        let mut map: FastMap<String, u32> = FastMap::default();
        for index in 0..1000 {
            map.insert(format!("key{index}"), index);
        }
        assert_eq!(map.len(), 1000);
        assert_eq!(map.get("key777"), Some(&777));
        assert_eq!(map.get("key1000"), None);
    }
}
