//! FNV-1a, 64 bit: the one small, stable hash behind decision ids and the
//! training-data fingerprint in model cards (the same on every run, build and
//! platform, unlike `std`'s `DefaultHasher`).

use std::hash::Hasher;

/// An FNV-1a 64 hasher. Feed bytes with [`Hasher::write`] (with explicit
/// byte orders, e.g. `to_le_bytes`, for numbers), read it with [`Hasher::finish`].
#[derive(Debug, Clone, Copy)]
pub struct Fnv1a64(u64);

impl Default for Fnv1a64 {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv1a64 {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_published_test_vectors() {
        let hash = |s: &str| {
            let mut h = Fnv1a64::default();
            h.write(s.as_bytes());
            h.finish()
        };
        assert_eq!(hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(hash("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(hash("foobar"), 0x8594_4171_f739_67e8);
    }
}
