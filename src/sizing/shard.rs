//! The blast radius of shuffle sharding: how many shards there are, and how much two keys'
//! shards overlap.

/// The number of ways to choose `k` of `n`: how many distinct shards of `k` cells `n` cells
/// allow. 0 when `k > n`; `u128::MAX` if the exact value does not fit in a `u128`.
///
/// # Examples
///
/// AWS's figures: 8 cells in shards of 2 give 28 shards; 2048 in shards of 4 about 730
/// billion.
///
/// ```
/// use bulkheads::sizing::combinations;
///
/// assert_eq!(combinations(8, 2), 28);
/// assert_eq!(combinations(2048, 4), 730_862_190_080);
/// ```
pub fn combinations(n: usize, k: usize) -> u128 {
    if k > n {
        return 0;
    }
    let k = k.min(n - k);
    let mut c: u128 = 1;
    for i in 0..k {
        // c * (n - i) / (i + 1) is exact at every step: c is C(n, i) and C(n, i) * (n - i)
        // is divisible by i + 1. Divide by the gcd first to delay overflow.
        let num = (n - i) as u128;
        let den = (i + 1) as u128;
        let g = gcd(c, den);
        let (c_red, den_red) = (c / g, den / g);
        let num_red = num / den_red; // den_red divides num since it is coprime with c_red
        match c_red.checked_mul(num_red) {
            Some(v) => c = v,
            None => return u128::MAX,
        }
    }
    c
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The natural logarithm of C(n, k), for sizes where the exact value overflows.
fn ln_combinations(n: usize, k: usize) -> f64 {
    let k = k.min(n - k);
    (0..k).map(|i| ((n - i) as f64 / (i + 1) as f64).ln()).sum()
}

/// The probability that two keys, each given a uniformly random shard of `k` of `n` cells,
/// share exactly `j` cells, for `j` in `0..=k` (the hypergeometric distribution:
/// C(k, j)·C(n−k, k−j) / C(n, k)). Index `k` is the chance that a key is fully exposed to
/// another's failure. Empty when `k > n`; `[1.0]` when `k` is 0.
///
/// # Examples
///
/// ```
/// use bulkheads::sizing::shard_overlap;
///
/// let p = shard_overlap(8, 2);
/// assert_eq!(p.len(), 3);
/// // 15 of the 28 shards avoid a given one, 12 share one cell, 1 (itself) shares both.
/// assert!((p[0] - 15.0 / 28.0).abs() < 1e-12);
/// assert!((p[1] - 12.0 / 28.0).abs() < 1e-12);
/// assert!((p[2] - 1.0 / 28.0).abs() < 1e-12);
/// ```
pub fn shard_overlap(n: usize, k: usize) -> Vec<f64> {
    if k > n {
        return Vec::new();
    }
    let total = ln_combinations(n, k);
    (0..=k)
        .map(|j| {
            if k - j > n - k {
                0.0
            } else {
                (ln_combinations(k, j) + ln_combinations(n - k, k - j) - total).exp()
            }
        })
        .collect()
}
