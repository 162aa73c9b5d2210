//! ShuffleSharder and the blast-radius arithmetic: AWS's figures, bad input, stability
//! across runs (pinned outputs), and an even spread over cells and shards.

use std::collections::HashMap;

use bulkheads::ShuffleSharder;
use bulkheads::sizing::{combinations, shard_overlap};

#[test]
fn aws_figures() {
    // "Shuffle Sharding: Massive and Magical Fault Isolation" (AWS): 8 workers in shards
    // of 2 give 28 combinations; 2048 cells in shards of 4 about 730 billion.
    assert_eq!(combinations(8, 2), 28);
    assert_eq!(combinations(2048, 4), 730_862_190_080);
    let billions = combinations(2048, 4) as f64 / 1e9;
    assert!((730.0..731.0).contains(&billions));
}

#[test]
fn combinations_edges() {
    assert_eq!(combinations(5, 0), 1);
    assert_eq!(combinations(5, 5), 1);
    assert_eq!(combinations(5, 6), 0);
    assert_eq!(combinations(0, 0), 1);
    assert_eq!(combinations(52, 5), 2_598_960);
    // C(128, 64) fits in a u128; it is 2.40e37.
    assert_eq!(
        combinations(128, 64),
        23_951_146_041_928_082_866_135_587_776_380_551_750
    );
    // Near the top of u128: the gcd step keeps the intermediate products in range.
    assert_eq!(
        combinations(130, 65),
        95067625827960698145584333020095113100
    );
    // Past u128, saturates.
    assert_eq!(combinations(1_000, 500), u128::MAX);
}

#[test]
fn shard_overlap_is_a_distribution() {
    for (n, k) in [(8, 2), (2048, 4), (10, 10), (100, 7), (6, 4)] {
        let p = shard_overlap(n, k);
        assert_eq!(p.len(), k + 1);
        let sum: f64 = p.iter().sum();
        assert!((sum - 1.0).abs() < 1e-9, "({n},{k}) sums to {sum}");
        assert!(p.iter().all(|x| (0.0..=1.0).contains(x)));
        // Full overlap: exactly 1 of C(n, k) shards.
        let full = 1.0 / combinations(n, k) as f64;
        assert!((p[k] - full).abs() <= full * 1e-9);
    }
    // 6 cells, shards of 4: two shards share at least 2 cells.
    let p = shard_overlap(6, 4);
    assert_eq!((p[0], p[1]), (0.0, 0.0));
    assert!(shard_overlap(3, 4).is_empty());
    assert_eq!(shard_overlap(3, 0), vec![1.0]);
}

#[test]
fn bad_sizes_are_config_errors() {
    assert_eq!(ShuffleSharder::new(0, 1, 0).unwrap_err().field(), "cells");
    assert_eq!(
        ShuffleSharder::new(8, 0, 0).unwrap_err().field(),
        "shard_size"
    );
    let err = ShuffleSharder::new(8, 9, 0).unwrap_err();
    assert_eq!(err.field(), "shard_size");
    assert!(err.to_string().contains("1..=8"), "{err}");
    assert!(ShuffleSharder::new(8, 8, 0).is_ok());
}

#[test]
fn shards_are_sorted_distinct_and_in_range() {
    for (cells, k) in [(8, 2), (2048, 4), (5, 5), (1, 1), (100, 50)] {
        let s = ShuffleSharder::new(cells, k, 99).unwrap();
        for i in 0..500 {
            let shard = s.shard(&format!("key-{i}"));
            assert_eq!(shard.len(), k);
            assert!(shard.windows(2).all(|w| w[0] < w[1]));
            assert!(shard.iter().all(|&c| c < cells));
        }
    }
}

#[test]
fn shards_are_stable_across_processes_and_versions() {
    // Pinned outputs of the documented hash. If this fails, tenants would move between
    // cells on upgrade: that is a breaking change, not a test to update lightly.
    let s = ShuffleSharder::new(8, 2, 0).unwrap();
    let pinned: Vec<Vec<usize>> = ["", "a", "tenant-1", "tenant-2", "acme"]
        .iter()
        .map(|k| s.shard(k))
        .collect();
    assert_eq!(pinned, PINNED_8_2_SEED_0);
    let t = ShuffleSharder::new(2048, 4, 0x5eed).unwrap();
    assert_eq!(t.shard("acme"), PINNED_2048_4);
    // The seed matters.
    let other = ShuffleSharder::new(2048, 4, 0x5eee).unwrap();
    assert_ne!(other.shard("acme"), t.shard("acme"));
}

const PINNED_8_2_SEED_0: [[usize; 2]; 5] = [[0, 5], [2, 7], [1, 6], [1, 5], [1, 7]];
const PINNED_2048_4: [usize; 4] = [545, 553, 722, 883];

#[test]
fn keys_spread_evenly_over_cells_and_shards() {
    const KEYS: usize = if cfg!(miri) { 280 } else { 28_000 };
    let s = ShuffleSharder::new(8, 2, 1).unwrap();
    let mut per_cell = [0usize; 8];
    let mut per_shard: HashMap<Vec<usize>, usize> = HashMap::new();
    for i in 0..KEYS {
        let shard = s.shard(&format!("tenant-{i}"));
        for &c in &shard {
            per_cell[c] += 1;
        }
        *per_shard.entry(shard).or_default() += 1;
    }
    assert_eq!(per_shard.len(), 28, "every one of the 28 shards is used");
    // Each shard expects KEYS / 28 = 1000 keys; a chi-square test at 27 degrees of freedom:
    // the 99.9th percentile is 55.5.
    let expected = KEYS as f64 / 28.0;
    let chi2: f64 = per_shard
        .values()
        .map(|&n| (n as f64 - expected).powi(2) / expected)
        .sum();
    if !cfg!(miri) {
        assert!(
            chi2 < 55.5,
            "chi-square {chi2}: shards are uneven: {per_shard:?}"
        );
    }
    let cell_expected = (KEYS * 2) as f64 / 8.0;
    for n in per_cell {
        assert!(
            (n as f64 - cell_expected).abs() < cell_expected * 0.1,
            "{per_cell:?}"
        );
    }
}
