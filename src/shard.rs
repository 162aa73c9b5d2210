//! [`ShuffleSharder`]: each key gets `shard_size` of `cells` compartments, chosen by a
//! seeded hash, so that two keys rarely share all their cells (AWS's shuffle sharding).
//!
//! # The hash (stable: part of the contract)
//!
//! A key's cells must be the same in every process and every version of this crate, so the
//! hash is fixed here rather than borrowed from `std` (whose `DefaultHasher` may change):
//!
//! 1. `h` = FNV-1a 64 of the key's UTF-8 bytes (offset basis `0xcbf29ce484222325`,
//!    prime `0x100000001b3`);
//! 2. a SplitMix64 generator is started at `h ^ seed` and each draw is the next SplitMix64
//!    output (increment `0x9e3779b97f4a7c15`, Stafford's mix 13 finaliser);
//! 3. a draw in `0..=j` is `(draw as u128 * (j + 1) as u128) >> 64` (Lemire's multiply-shift);
//! 4. the cells are picked with Floyd's sampling algorithm: for `j` in `cells - k .. cells`,
//!    draw `t` in `0..=j`; take `t` unless already taken, else take `j`. Then sorted.
//!
//! Changing any of these steps would move tenants between cells; tests pin known outputs.

use crate::error::ConfigError;

/// Assigns each key a shard: `shard_size` distinct cells out of `cells`, stable for a seed
/// and key across processes.
///
/// # Examples
///
/// ```
/// use bulkheads::ShuffleSharder;
///
/// let sharder = ShuffleSharder::new(8, 2, 42)?;
/// let shard = sharder.shard("tenant-17");
/// assert_eq!(shard.len(), 2);
/// assert!(shard[0] < shard[1] && shard[1] < 8);
/// assert_eq!(sharder.shard("tenant-17"), shard); // stable
/// # Ok::<(), bulkheads::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShuffleSharder {
    cells: usize,
    shard_size: usize,
    seed: u64,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a, 64 bits.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(FNV_PRIME)
    })
}

/// SplitMix64 (Steele, Lea and Flood; the constants of Vigna's reference version).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A draw in `0..=j`.
    fn below_or_eq(&mut self, j: usize) -> usize {
        let span = j as u128 + 1;
        // The product's high word is below `span`, which fits in usize.
        ((u128::from(self.next()) * span) >> 64) as usize
    }
}

impl ShuffleSharder {
    /// A sharder over `cells` cells, `shard_size` per key, hashing with `seed`.
    ///
    /// # Errors
    ///
    /// A `ConfigError` (bulkhead `"shuffle-sharder"`) naming `cells` when it is 0, or
    /// `shard_size` when it is 0 or above `cells`.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::ShuffleSharder;
    ///
    /// assert_eq!(ShuffleSharder::new(8, 9, 0).unwrap_err().field(), "shard_size");
    /// assert_eq!(ShuffleSharder::new(8, 0, 0).unwrap_err().field(), "shard_size");
    /// assert_eq!(ShuffleSharder::new(0, 0, 0).unwrap_err().field(), "cells");
    /// ```
    pub fn new(cells: usize, shard_size: usize, seed: u64) -> Result<Self, ConfigError> {
        const NAME: &str = "shuffle-sharder";
        if cells == 0 {
            return Err(ConfigError::new(NAME, "cells", "must be at least 1"));
        }
        if shard_size == 0 || shard_size > cells {
            return Err(ConfigError::new(
                NAME,
                "shard_size",
                format!("must be in 1..={cells} (the number of cells), not {shard_size}"),
            ));
        }
        Ok(Self {
            cells,
            shard_size,
            seed,
        })
    }

    /// The number of cells.
    pub fn cells(&self) -> usize {
        self.cells
    }

    /// The number of cells per key.
    pub fn shard_size(&self) -> usize {
        self.shard_size
    }

    /// The key's cells: `shard_size` distinct indices in `0..cells`, sorted, the same for
    /// this seed and key in every process (see the module's documentation for the hash).
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::ShuffleSharder;
    ///
    /// let sharder = ShuffleSharder::new(4, 4, 7)?;
    /// assert_eq!(sharder.shard("anyone"), vec![0, 1, 2, 3]);
    /// # Ok::<(), bulkheads::ConfigError>(())
    /// ```
    pub fn shard(&self, key: &str) -> Vec<usize> {
        let mut rng = SplitMix64(fnv1a(key.as_bytes()) ^ self.seed);
        let mut picked: Vec<usize> = Vec::with_capacity(self.shard_size);
        for j in self.cells - self.shard_size..self.cells {
            let t = rng.below_or_eq(j);
            // The shard is small: a linear scan beats a set.
            if picked.contains(&t) {
                picked.push(j);
            } else {
                picked.push(t);
            }
        }
        picked.sort_unstable();
        picked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_known_vectors() {
        // From the FNV reference test suite.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn splitmix64_known_vector() {
        // Vigna's splitmix64.c seeded with 1234567: first output.
        let mut rng = SplitMix64(1_234_567);
        assert_eq!(rng.next(), 6_457_827_717_110_365_317);
    }
}
