//! `ReleasedSymbols`: which symbols had their state released, in a fixed amount of memory.
//!
//! A symbol's state (sequence numbers, derived-field state, channel names) is released some
//! time after nobody holds any of its channels, so the core's memory follows what is subscribed,
//! not what ever was. Its seqs must still never go back within the epoch (a client may hold one,
//! and the replay ring must never mix two numberings), so a symbol whose state comes back
//! starts its seqs above every seq given out so far. This filter answers "was it released?"
//! without remembering each symbol: a Bloom filter of fixed size. A false "yes" only makes a
//! symbol new to this epoch start above 1, which breaks nothing.

use std::hash::{BuildHasher, Hasher};

use rustc_hash::FxBuildHasher;

/// 2^20 bits (128 KiB): under 1 % false positives up to about 100,000 released symbols.
const BITS: usize = 1 << 20;
const HASHES: u64 = 4;

pub struct ReleasedSymbols {
    bits: Vec<u64>,
    count: u64,
}

impl Default for ReleasedSymbols {
    fn default() -> Self {
        ReleasedSymbols {
            bits: vec![0; BITS / 64],
            count: 0,
        }
    }
}

impl ReleasedSymbols {
    fn positions(symbol: &str) -> impl Iterator<Item = usize> {
        let mut h = FxBuildHasher.build_hasher();
        h.write(symbol.as_bytes());
        let h1 = h.finish();
        let h2 = h1.rotate_left(32) | 1;
        (0..HASHES).map(move |i| (h1.wrapping_add(i.wrapping_mul(h2)) % BITS as u64) as usize)
    }

    pub fn insert(&mut self, symbol: &str) {
        for p in Self::positions(symbol) {
            self.bits[p / 64] |= 1 << (p % 64);
        }
        self.count += 1;
    }

    /// Whether `symbol` may have been released (never a false "no").
    pub fn may_contain(&self, symbol: &str) -> bool {
        self.count > 0 && Self::positions(symbol).all(|p| self.bits[p / 64] & (1 << (p % 64)) != 0)
    }

    /// Releases so far.
    pub fn count(&self) -> u64 {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_a_false_no_and_rarely_a_false_yes() {
        let mut r = ReleasedSymbols::default();
        assert!(!r.may_contain("AAPL$US"));
        for i in 0..10_000 {
            r.insert(&format!("S{i}$US"));
        }
        assert!((0..10_000).all(|i| r.may_contain(&format!("S{i}$US"))));
        let false_yes = (0..10_000).filter(|i| r.may_contain(&format!("T{i}$HK"))).count();
        assert!(false_yes < 10, "{false_yes} false positives in 10,000");
    }
}
