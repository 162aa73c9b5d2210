//! Cells and shuffle sharding: one poisonous tenant fills its shard, and only the tenants
//! that share both its cells go down with it.
//!
//! `cargo run --example cells`
//!
//! 8 cells (each a semaphore of 4 permits), every tenant given a shard of 2 by
//! [`ShuffleSharder`]. The poisonous tenant's calls never return, so it ends up holding every
//! permit of its two cells. Then each of the other tenants tries one call on each of its
//! cells. A tenant that shares both cells with the poison is fully down; one that shares one
//! cell keeps half its capacity; the rest do not notice. The counts are checked against
//! `sizing::shard_overlap(8, 2)`, the probability of each overlap.

use std::sync::Arc;

use bulkheads::sizing::{combinations, shard_overlap};
use bulkheads::{SemaphoreBulkhead, SemaphoreConfig, ShuffleSharder};

const CELLS: usize = 8;
const SHARD: usize = 2;
const TENANTS: usize = 2_800;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sharder = ShuffleSharder::new(CELLS, SHARD, 2026)?;
    let cells: Vec<Arc<SemaphoreBulkhead>> = (0..CELLS)
        .map(|c| SemaphoreBulkhead::new(format!("cell-{c}"), SemaphoreConfig::new(4)).map(Arc::new))
        .collect::<Result<_, _>>()?;

    // The poison hammers its shard: each call hangs, holding its permit, until both cells
    // refuse it.
    let poison = sharder.shard("tenant-poison");
    let mut hung = Vec::new();
    for &c in &poison {
        while let Ok(permit) = cells[c].try_acquire_owned() {
            hung.push(permit);
        }
    }
    println!(
        "{} shards of {SHARD} among {CELLS} cells; the poisonous tenant holds cells {poison:?} ({} calls hung)",
        combinations(CELLS, SHARD),
        hung.len()
    );

    // Every other tenant tries one call on each of its cells.
    let mut by_overlap = [0usize; SHARD + 1];
    let mut by_capacity = [0usize; SHARD + 1];
    for t in 0..TENANTS {
        let shard = sharder.shard(&format!("tenant-{t}"));
        let overlap = shard.iter().filter(|c| poison.contains(c)).count();
        let served = shard
            .iter()
            .filter(|&&c| cells[c].call(|| ()).is_ok())
            .count();
        by_overlap[overlap] += 1;
        // Cells still serving this tenant: its capacity left, in halves.
        by_capacity[SHARD - served] += 1;
    }
    assert_eq!(
        by_overlap, by_capacity,
        "a cell fails exactly when the poison holds it"
    );

    let p = shard_overlap(CELLS, SHARD);
    println!("cells shared   tenants   expected (shard_overlap)   what they see");
    let label = ["unaffected", "half their capacity", "fully down"];
    for j in 0..=SHARD {
        let expected = p[j] * TENANTS as f64;
        println!(
            "{j:>12}   {:>7}   {expected:>24.1}   {}",
            by_overlap[j], label[j]
        );
        // A binomial count: within 5 standard deviations of its mean, or the hash is not
        // spreading tenants as the formula assumes.
        let sd = (TENANTS as f64 * p[j] * (1.0 - p[j])).sqrt();
        assert!(
            (by_overlap[j] as f64 - expected).abs() <= 5.0 * sd + 1.0,
            "overlap {j}: {} tenants, expected {expected:.1}",
            by_overlap[j]
        );
    }
    println!(
        "fully down: {:.2}% of tenants (1 in {}), versus 100% with one shared compartment",
        100.0 * by_overlap[SHARD] as f64 / TENANTS as f64,
        combinations(CELLS, SHARD)
    );
    drop(hung);
    Ok(())
}
