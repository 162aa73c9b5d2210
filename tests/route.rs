//! Routing keys to pools: first match wins, the whole key, unmatched keys to "default",
//! and outside keys never grow the registry.

use bulkheads::{BulkheadManager, PoolConfig};

fn manager() -> BulkheadManager {
    BulkheadManager::builder()
        .pool("orders", PoolConfig::new(2))
        .pool("users", PoolConfig::new(2))
        .pool("static", PoolConfig::new(1))
        .route("/users/*/orders*", "orders")
        .route("/users/*", "users")
        .route("*.css", "static")
        .build()
        .unwrap()
}

#[test]
fn first_match_wins_and_the_pattern_covers_the_whole_key() {
    let m = manager();
    assert_eq!(m.pool_for("/users/42/orders").name(), "orders");
    assert_eq!(m.pool_for("/users/42/orders/7").name(), "orders");
    assert_eq!(m.pool_for("/users/42").name(), "users");
    assert_eq!(
        m.pool_for("/users/").name(),
        "users",
        "* matches an empty run"
    );
    assert_eq!(m.pool_for("/site.css").name(), "static");
    assert_eq!(m.pool_for("/site.css?v=2").name(), "default", "whole key");
    assert_eq!(m.pool_for("/user").name(), "default");
}

#[test]
fn unmatched_keys_share_one_default_pool_and_never_grow_the_registry() {
    let m = manager();
    let before = m.stats().bulkheads.len();
    let first = m.pool_for("/a");
    for i in 0..1_000 {
        let p = m.pool_for(&format!("/random/{i}"));
        assert!(std::sync::Arc::ptr_eq(&p, &first));
    }
    assert_eq!(
        m.stats().bulkheads.len(),
        before + 1,
        "only \"default\" was added"
    );
    assert!(m.get_pool("/a").is_none());
    // Odd keys are keys like any other: no panic.
    assert_eq!(m.pool_for("").name(), "default");
    assert_eq!(m.pool_for("a\0b").name(), "default");
}

#[test]
fn a_route_to_an_invalid_name_is_a_config_error() {
    let err = BulkheadManager::builder()
        .route("/x*", "")
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "route");
}

#[test]
fn routes_to_unconfigured_names_use_the_default_config() {
    let m = BulkheadManager::builder()
        .default_pool_config(PoolConfig::new(3))
        .route("/img/*", "images")
        .build()
        .unwrap();
    let p = m.pool_for("/img/cat.png");
    assert_eq!(p.name(), "images");
    assert_eq!(p.stats().max_threads, 3);
}
