//! Feature `serde`: snapshots serialize, configurations deserialize and round-trip, and a
//! manager builds from TOML, where every bad entry names its bulkhead and its field.
#![cfg(feature = "serde")]

use std::time::Duration;

use bulkheads::{BulkheadManager, ConfigError, PoolConfig, SemaphoreConfig};
use serde_json::json;

const MS: fn(u64) -> Duration = Duration::from_millis;

/// The brief's example document, with every field of every table.
const FULL: &str = r#"
max_bulkheads = 100          # optional

[default_pool]
max_threads = 10
queue_capacity = 5

[default_semaphore]
max_concurrent = 7
max_wait = 15

[pools.inventory]
max_threads = 50
queue_capacity = 10
keep_alive = "30s"
default_timeout = "500ms"

[pools.payment]
max_threads = 8
core_threads = 2
queue_capacity = "unbounded"
keep_alive = "1m30s"
thread_name_prefix = "pay"
stack_size = 1048576
prestart = true

[semaphores.cache]
max_concurrent = 25
max_wait = "20ms"
"#;

// ---------------------------------------------------------------------------------------------
// Configurations: deserialize, and serialize back to the same thing
// ---------------------------------------------------------------------------------------------

fn pool_configs() -> Vec<PoolConfig> {
    vec![
        PoolConfig::new(1),
        PoolConfig::default(),
        PoolConfig::new(50)
            .queue_capacity(10)
            .keep_alive(Duration::from_secs(30))
            .default_timeout(MS(500)),
        PoolConfig::new(8)
            .core_threads(0)
            .queue_capacity(usize::MAX)
            .keep_alive(Duration::new(1, 5))
            .default_timeout(Duration::from_secs(3_600))
            .thread_name_prefix("pay")
            .stack_size(1 << 20)
            .prestart(true),
    ]
}

#[test]
fn pool_configs_round_trip_through_json() {
    for config in pool_configs() {
        let json = serde_json::to_string(&config).unwrap();
        let back: PoolConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, config, "{json}");
    }
}

#[test]
fn semaphore_configs_round_trip_through_json() {
    for config in [
        SemaphoreConfig::new(1),
        SemaphoreConfig::default(),
        SemaphoreConfig::new(25).max_wait(MS(20)),
        SemaphoreConfig::new(3).max_wait(Duration::from_nanos(1_500)),
    ] {
        let json = serde_json::to_string(&config).unwrap();
        let back: SemaphoreConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, config, "{json}");
    }
}

#[test]
fn configs_serialize_in_the_form_a_person_writes() {
    let config = PoolConfig::new(50)
        .queue_capacity(10)
        .keep_alive(Duration::from_secs(30))
        .default_timeout(MS(500));
    assert_eq!(
        serde_json::to_value(&config).unwrap(),
        json!({ "max_threads": 50, "queue_capacity": 10, "keep_alive": "30s", "default_timeout": "500ms" })
    );
    assert_eq!(
        serde_json::to_value(PoolConfig::new(4).queue_capacity(usize::MAX)).unwrap(),
        json!({ "max_threads": 4, "queue_capacity": "unbounded" })
    );
    assert_eq!(
        serde_json::to_value(SemaphoreConfig::new(25).max_wait(Duration::from_secs(120))).unwrap(),
        json!({ "max_concurrent": 25, "max_wait": "2m" })
    );
}

#[test]
fn configs_deserialize_from_toml_through_serde() {
    let config: PoolConfig = toml::from_str(
        "max_threads = 50\nqueue_capacity = 10\nkeep_alive = \"30s\"\ndefault_timeout = 500",
    )
    .unwrap();
    assert_eq!(config, pool_configs()[2]);
    let config: SemaphoreConfig =
        toml::from_str("max_concurrent = 25\nmax_wait = \"20ms\"").unwrap();
    assert_eq!(config, SemaphoreConfig::new(25).max_wait(MS(20)));
}

#[test]
fn serde_errors_name_the_field() {
    for (json, needle) in [
        (r#"{"max_threads": 1, "keep_alive": "soon"}"#, "keep_alive"),
        (r#"{"max_threads": 1, "keep_alive": 1.5}"#, "keep_alive"),
        (r#"{"max_threads": "ten"}"#, "max_threads"),
        (r#"{"max_threads": -1}"#, "max_threads must not be negative"),
        (r#"{"queue_capacity": 3}"#, "max_threads is required"),
        (r#"{"max_threads": 1, "kep_alive": "1s"}"#, "kep_alive"),
        (
            r#"{"max_threads": 1, "max_threads": 2}"#,
            "duplicate field `max_threads`",
        ),
        (
            r#"{"max_threads": 1, "stack_size": {"a": 1}}"#,
            "stack_size must be an integer (got a table)",
        ),
        (r#"[1, 2]"#, "PoolConfig"),
    ] {
        let err = serde_json::from_str::<PoolConfig>(json)
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{json}: {err}");
    }
    let err =
        serde_json::from_str::<SemaphoreConfig>(r#"{"max_concurrent": 2, "max_wait": "1.5s"}"#)
            .unwrap_err()
            .to_string();
    assert!(
        err.contains("max_wait") && err.contains("fractions"),
        "{err}"
    );
}

/// Deserializing does not validate (there is no name yet); every constructor does, with the
/// field named.
#[test]
fn deserialized_configs_are_validated_where_they_are_used() {
    let config: PoolConfig = serde_json::from_str(r#"{"max_threads": 0}"#).unwrap();
    let err = bulkheads::ThreadPoolBulkhead::new("db", config).unwrap_err();
    assert_eq!((err.bulkhead(), err.field()), ("db", "max_threads"));
}

// ---------------------------------------------------------------------------------------------
// Snapshots serialize
// ---------------------------------------------------------------------------------------------

#[test]
fn manager_stats_serialize_every_field_tagged_by_kind() {
    let manager = BulkheadManager::builder()
        .pool(
            "inventory",
            PoolConfig::new(3).core_threads(1).queue_capacity(2),
        )
        .semaphore("cache", SemaphoreConfig::new(1))
        .build()
        .unwrap();
    let pool = manager.pool("inventory");
    pool.execute(|| ()).unwrap();
    assert!(pool.execute(|| panic!("boom")).unwrap_err().is_panicked());
    let sem = manager.semaphore("cache");
    let permit = sem.try_acquire().unwrap();
    assert!(sem.try_acquire().is_err());

    let stats = manager.stats();
    let mut value = serde_json::to_value(&stats).unwrap();
    let live = stats.pool("inventory").unwrap().live_threads;
    // Latency summaries: counts exact, times in seconds (their values depend on the machine).
    let wait = value["bulkheads"][0]
        .as_object_mut()
        .unwrap()
        .remove("wait")
        .unwrap();
    assert_eq!(
        (wait["count"].as_u64(), wait["p99_seconds"].as_f64()),
        (Some(1), Some(0.0))
    );
    let pool_json = value["bulkheads"][1].as_object_mut().unwrap();
    for latency in ["queue_wait", "run_time"] {
        let summary = pool_json.remove(latency).unwrap();
        assert_eq!(summary["count"], 2, "{latency}");
        let (p50, max) = (
            summary["p50_seconds"].as_f64(),
            summary["max_seconds"].as_f64(),
        );
        assert!(p50.unwrap() <= max.unwrap(), "{latency}: {summary}");
    }
    assert_eq!(
        value,
        json!({ "bulkheads": [
            {
                "kind": "semaphore", "name": "cache", "max_concurrent": 1, "limit": 1,
                "running": 1, "waiting": 0, "permitted": 1, "rejected": 1, "failed": 0,
            },
            {
                "kind": "pool", "name": "inventory", "max_threads": 3, "limit": 3,
                "core_threads": 1,
                "queue_capacity": 2, "live_threads": live, "running": 0, "queued": 0,
                "peak_running": 1, "submitted": 2, "rejected": 0, "shutdown_refused": 0,
                "completed": 1, "failed": 0,
                "panicked": 1, "timed_out": 0, "expired": 0, "cancelled": 0,
                "global_refused": 0, "is_shutdown": false,
            },
        ]})
    );
    // The snapshots alone serialize without the tag.
    let pool_alone = serde_json::to_value(stats.pool("inventory").unwrap()).unwrap();
    assert_eq!(pool_alone["completed"], 1);
    assert!(pool_alone.get("kind").is_none());
    let sem_alone = serde_json::to_value(stats.semaphore("cache").unwrap()).unwrap();
    assert_eq!(sem_alone["rejected"], 1);
    assert!(sem_alone.get("kind").is_none());
    drop(permit);
}

// ---------------------------------------------------------------------------------------------
// A manager from TOML
// ---------------------------------------------------------------------------------------------

#[test]
fn from_toml_builds_every_table() {
    let manager = BulkheadManager::from_toml(FULL).unwrap();
    assert_eq!(
        manager.get_pool("inventory").unwrap().config(),
        pool_configs()[2]
    );
    assert_eq!(
        manager.get_pool("payment").unwrap().config(),
        PoolConfig::new(8)
            .core_threads(2)
            .queue_capacity(usize::MAX)
            .keep_alive(Duration::from_secs(90))
            .thread_name_prefix("pay")
            .stack_size(1 << 20)
            .prestart(true)
    );
    assert_eq!(
        manager.get_semaphore("cache").unwrap().config(),
        SemaphoreConfig::new(25).max_wait(MS(20))
    );
    // The defaults serve names that were not configured (with core_threads 0, as the
    // manager gives every pool it creates on first use unless the default sets it).
    assert_eq!(
        manager.pool("other").config(),
        PoolConfig::new(10).queue_capacity(5).core_threads(0)
    );
    assert_eq!(
        manager.semaphore("other").config(),
        SemaphoreConfig::new(7).max_wait(MS(15))
    );
    assert_eq!(manager.len(), 5);
    // And the manager works.
    assert_eq!(manager.execute("inventory", || 6 * 7).unwrap(), 42);
    assert_eq!(manager.semaphore("cache").call(|| "hit").unwrap(), "hit");
    assert!(manager.shutdown(Duration::from_secs(10)));
}

#[test]
fn from_toml_honours_max_bulkheads() {
    let manager = BulkheadManager::from_toml("max_bulkheads = 1").unwrap();
    manager.try_pool("first").unwrap();
    let err = manager.try_pool("second").unwrap_err();
    assert_eq!((err.bulkhead(), err.field()), ("second", "max_bulkheads"));
}

#[test]
fn empty_document_is_a_default_manager() {
    let manager = BulkheadManager::from_toml("# nothing configured\n").unwrap();
    assert!(manager.is_empty());
    assert_eq!(
        manager.pool("any").config(),
        PoolConfig::default().core_threads(0)
    );
}

#[test]
fn config_round_trips_through_a_toml_document() {
    // Serialize each config as JSON, turn it into TOML text by hand (the crate's toml
    // dependency parses only), and read the document back.
    let mut document = String::new();
    for (i, config) in pool_configs().into_iter().enumerate() {
        document.push_str(&format!("[pools.p{i}]\n"));
        let value = serde_json::to_value(&config).unwrap();
        for (key, value) in value.as_object().unwrap() {
            document.push_str(&format!("{key} = {value}\n"));
        }
    }
    let manager = BulkheadManager::from_toml(&document).unwrap();
    for (i, config) in pool_configs().into_iter().enumerate() {
        assert_eq!(
            manager.get_pool(&format!("p{i}")).unwrap().config(),
            config,
            "{document}"
        );
    }
}

fn toml_err(text: &str) -> ConfigError {
    BulkheadManager::from_toml(text).expect_err(text)
}

/// Every way a document can be wrong, with the bulkhead and the field the error must name
/// and a piece of its reason.
#[test]
fn every_bad_entry_names_its_bulkhead_and_field() {
    let pool = |body: &str| format!("[pools.inventory]\n{body}\n");
    let sized = |body: &str| pool(&format!("max_threads = 5\n{body}"));
    let sem = |body: &str| format!("[semaphores.cache]\n{body}\n");
    let cases: Vec<(String, &str, &str, &str)> = vec![
        // Unknown keys, at each level.
        (
            sized("kep_alive = \"1s\""),
            "inventory",
            "unknown field",
            "`kep_alive`",
        ),
        (
            sem("max_concurrent = 2\nmax_wiat = 5"),
            "cache",
            "unknown field",
            "`max_wiat`",
        ),
        (
            "max_bulkhead = 3".into(),
            "<manager>",
            "unknown field",
            "`max_bulkhead`",
        ),
        (
            "[pool.inventory]\nmax_threads = 1".into(),
            "<manager>",
            "unknown field",
            "`pool`",
        ),
        (
            "[default_pool]\nmax_threads = 1\nqueue = 2".into(),
            "<default>",
            "unknown field",
            "`queue`",
        ),
        // Wrong types.
        (
            pool("max_threads = \"ten\""),
            "inventory",
            "max_threads",
            "must be an integer",
        ),
        (
            pool("max_threads = 1.5"),
            "inventory",
            "max_threads",
            "a float",
        ),
        (
            pool("max_threads = [1]"),
            "inventory",
            "max_threads",
            "an array",
        ),
        (
            pool("max_threads = -1"),
            "inventory",
            "max_threads",
            "negative",
        ),
        (
            sized("core_threads = true"),
            "inventory",
            "core_threads",
            "a boolean",
        ),
        (
            sized("queue_capacity = \"lots\""),
            "inventory",
            "queue_capacity",
            "\"unbounded\"",
        ),
        (
            sized("keep_alive = 1979-05-27"),
            "inventory",
            "keep_alive",
            "a datetime",
        ),
        (
            sized("thread_name_prefix = 5"),
            "inventory",
            "thread_name_prefix",
            "must be a string",
        ),
        (
            sized("stack_size = \"1MiB\""),
            "inventory",
            "stack_size",
            "must be an integer",
        ),
        (
            sem("max_concurrent = \"2\""),
            "cache",
            "max_concurrent",
            "must be an integer",
        ),
        (
            "max_bulkheads = \"many\"".into(),
            "<manager>",
            "max_bulkheads",
            "must be an integer",
        ),
        ("pools = 3".into(), "<manager>", "pools", "must be a table"),
        (
            "semaphores = \"x\"".into(),
            "<manager>",
            "semaphores",
            "must be a table",
        ),
        (
            "default_pool = 3".into(),
            "<manager>",
            "default_pool",
            "must be a table",
        ),
        (
            "default_semaphore = []".into(),
            "<manager>",
            "default_semaphore",
            "must be a table",
        ),
        (
            "[pools]\ninventory = 5".into(),
            "inventory",
            "pools",
            "must be a table",
        ),
        (
            "[semaphores]\ncache = 5".into(),
            "cache",
            "semaphores",
            "must be a table",
        ),
        // Unparsable durations.
        (
            sized("keep_alive = \"soon\""),
            "inventory",
            "keep_alive",
            "expected a number",
        ),
        (
            sized("keep_alive = \"30\""),
            "inventory",
            "keep_alive",
            "no unit",
        ),
        (
            sized("default_timeout = \"1.5s\""),
            "inventory",
            "default_timeout",
            "fractions",
        ),
        (
            sized("default_timeout = \"5 minutes\""),
            "inventory",
            "default_timeout",
            "unknown unit",
        ),
        (
            sized("default_timeout = -5"),
            "inventory",
            "default_timeout",
            "negative",
        ),
        (
            sem("max_concurrent = 2\nmax_wait = \"forever\""),
            "cache",
            "max_wait",
            "\"forever\"",
        ),
        (
            "[default_semaphore]\nmax_concurrent = 2\nmax_wait = \"x\"".into(),
            "<default>",
            "max_wait",
            "duration",
        ),
        // Missing required fields.
        (
            pool("queue_capacity = 3"),
            "inventory",
            "max_threads",
            "is required",
        ),
        (
            sem("max_wait = \"1s\""),
            "cache",
            "max_concurrent",
            "is required",
        ),
        (
            "[default_pool]\nqueue_capacity = 3".into(),
            "<default>",
            "max_threads",
            "is required",
        ),
        // Values the builder's validation refuses.
        (
            pool("max_threads = 0"),
            "inventory",
            "max_threads",
            "at least 1",
        ),
        (
            pool("max_threads = 40000"),
            "inventory",
            "max_threads",
            "at most",
        ),
        (
            sized("core_threads = 9"),
            "inventory",
            "core_threads",
            "must not exceed",
        ),
        (
            sized("keep_alive = \"0s\""),
            "inventory",
            "keep_alive",
            "must not be zero",
        ),
        (
            sized("default_timeout = 0"),
            "inventory",
            "default_timeout",
            "must not be zero",
        ),
        (
            sized("thread_name_prefix = \"\""),
            "inventory",
            "thread_name_prefix",
            "empty",
        ),
        (
            sized("stack_size = 0"),
            "inventory",
            "stack_size",
            "must not be zero",
        ),
        (
            sem("max_concurrent = 0"),
            "cache",
            "max_concurrent",
            "at least 1",
        ),
        (
            "[default_pool]\nmax_threads = 0".into(),
            "<default>",
            "max_threads",
            "at least 1",
        ),
        (
            "[pools.\"\"]\nmax_threads = 1".into(),
            "",
            "name",
            "must not be empty",
        ),
        (
            "max_bulkheads = 1\n[pools.a]\nmax_threads = 1\n[pools.b]\nmax_threads = 1".into(),
            "<manager>",
            "max_bulkheads",
            "at least the 2",
        ),
    ];
    for (text, bulkhead, field, reason) in cases {
        let err = toml_err(&text);
        assert_eq!(
            (err.bulkhead(), err.field()),
            (bulkhead, field),
            "{text}\n=> {err}"
        );
        assert!(err.reason().contains(reason), "{text}\n=> {err}");
        // The message names both, for logs.
        let message = err.to_string();
        assert!(message.contains(&format!("'{bulkhead}'")), "{message}");
        assert!(message.contains(field), "{message}");
    }
}

#[test]
fn unknown_keys_list_what_is_expected() {
    let err = toml_err("[pools.inventory]\nmax_threads = 5\nkep_alive = \"1s\"");
    assert_eq!(
        err.to_string(),
        "invalid configuration for bulkhead 'inventory': unknown field `kep_alive` (expected \
         one of: max_threads, core_threads, queue_capacity, keep_alive, default_timeout, \
         thread_name_prefix, stack_size, prestart)"
    );
}

#[test]
fn toml_syntax_errors_name_the_line() {
    for (text, line) in [
        ("[pools.inventory\nmax_threads = 5", 1),
        ("[pools.inventory]\nmax_threads = = 5", 2),
        ("[pools.a]\nmax_threads = 1\nmax_threads = 2", 3),
        (
            "[pools.a]\nmax_threads = 1\n\n[pools.a]\nmax_threads = 2",
            4,
        ),
        ("[pools.a]\nkeep_alive = \"30s", 2),
    ] {
        let err = toml_err(text);
        assert_eq!(
            (err.bulkhead(), err.field()),
            ("<toml>", "syntax"),
            "{text}"
        );
        assert!(
            err.reason().contains(&format!("line {line}, column")),
            "{text}\n=> {err}"
        );
        assert!(!err.reason().contains('\n'), "one line for logs: {err}");
    }
}

// `apply_toml`: live reconfiguration from an edited file, all or nothing.

#[test]
fn apply_toml_reconfigures_named_bulkheads_and_leaves_the_rest() {
    let file = "[pools.inventory]\nmax_threads = 4\n[pools.payment]\nmax_threads = 3\n\
                [semaphores.cache]\nmax_concurrent = 5\nmax_wait = \"10ms\"";
    let manager = BulkheadManager::from_toml(file).unwrap();
    // The same file, edited: inventory grows, cache shrinks and waits longer; payment is
    // not named and keeps its configuration. The manager's own keys are checked, not applied.
    manager
        .apply_toml(
            "max_bulkheads = 50\n[pools.inventory]\nmax_threads = 12\nqueue_capacity = 6\n\
             [semaphores.cache]\nmax_concurrent = 2\nmax_wait = \"50ms\"",
        )
        .unwrap();
    let inventory = manager.get_pool("inventory").unwrap();
    assert_eq!(inventory.config(), PoolConfig::new(12).queue_capacity(6));
    assert_eq!(
        manager.get_pool("payment").unwrap().config(),
        PoolConfig::new(3)
    );
    assert_eq!(
        manager.get_semaphore("cache").unwrap().config(),
        SemaphoreConfig::new(2).max_wait(MS(50))
    );
    let stats = manager.stats();
    assert_eq!(stats.pool("inventory").unwrap().queue_capacity, 6);
    assert_eq!(stats.semaphore("cache").unwrap().max_concurrent, 2);
}

#[test]
fn apply_toml_validates_every_entry_before_applying_any() {
    let manager =
        BulkheadManager::from_toml("[pools.a]\nmax_threads = 2\n[pools.b]\nmax_threads = 2")
            .unwrap();
    let cases = [
        // (document, bulkhead, field): the first entry is valid, a later one is not.
        (
            "[pools.a]\nmax_threads = 9\n[pools.b]\nmax_threads = 0",
            "b",
            "max_threads",
        ),
        (
            "[pools.a]\nmax_threads = 9\n[pools.b]\nmax_threads = 2\ncore_threads = 3",
            "b",
            "core_threads",
        ),
        (
            "[pools.a]\nmax_threads = 9\n[pools.zz]\nmax_threads = 2",
            "zz",
            "pools",
        ),
        (
            "[pools.a]\nmax_threads = 9\n[semaphores.a]\nmax_concurrent = 2",
            "a",
            "semaphores",
        ),
        (
            "[pools.a]\nmax_threads = 9\nkeep_alive = \"later\"",
            "a",
            "keep_alive",
        ),
        (
            "[pools.a]\nmax_threads = 9\n[default_pool]\nmax_threads = 0",
            "<default>",
            "max_threads",
        ),
        (
            "[pools.a]\nmax_threads = 9\nbogus = 1",
            "a",
            "unknown field",
        ),
        ("[pools.a]\nmax_threads = = 9", "<toml>", "syntax"),
    ];
    for (document, bulkhead, field) in cases {
        let err = manager.apply_toml(document).unwrap_err();
        assert_eq!(
            (err.bulkhead(), err.field()),
            (bulkhead, field),
            "{document}: {err}"
        );
        assert_eq!(
            manager.get_pool("a").unwrap().config(),
            PoolConfig::new(2),
            "{document}: applied although a later entry was invalid"
        );
    }
}

#[test]
fn a_bounded_wait_reads_from_toml_and_round_trips_and_an_unbounded_one_keeps_its_form() {
    let manager = BulkheadManager::from_toml(
        "[semaphores.db]\nmax_concurrent = 4\nmax_wait = \"50ms\"\nmax_waiting = 8",
    )
    .unwrap();
    let config = manager.get_semaphore("db").unwrap().config();
    assert_eq!(
        config,
        SemaphoreConfig::new(4).max_wait(MS(50)).max_waiting(8)
    );
    let json = serde_json::to_value(&config).unwrap();
    assert_eq!(
        json,
        json!({"max_concurrent": 4, "max_wait": "50ms", "max_waiting": 8})
    );
    let back: SemaphoreConfig = serde_json::from_value(json).unwrap();
    assert_eq!(back, config);
    assert_eq!(
        serde_json::to_value(SemaphoreConfig::new(4)).unwrap(),
        json!({"max_concurrent": 4, "max_wait": "0s"})
    );
    let err = toml_err("[semaphores.db]\nmax_concurrent = 4\nmax_waiting = -1");
    assert_eq!((err.bulkhead(), err.field()), ("db", "max_waiting"));
}

#[test]
fn keyed_tables_build_keyed_semaphores_with_their_fields() {
    let manager = BulkheadManager::from_toml(
        r#"
        [keyed.tenants]
        max_concurrent = 2
        max_wait = "5ms"
        max_keys = 3
        idle_ttl = "2m"
        global_limit = 4
        "#,
    )
    .unwrap();
    let tenants = manager.keyed("tenants").expect("built from the table");
    let held: Vec<_> = (0..2).map(|_| tenants.try_acquire("a").unwrap()).collect();
    assert!(
        tenants.try_acquire("a").unwrap_err().is_rejected(),
        "2 per key"
    );
    let more: Vec<_> = (0..2).map(|_| tenants.try_acquire("b").unwrap()).collect();
    assert!(
        tenants.try_acquire("c").unwrap_err().is_rejected(),
        "4 over all keys"
    );
    drop((held, more));
    tenants.call("c", || ()).unwrap();
    let err = tenants.call("d", || ()).unwrap_err();
    assert!(err.to_string().contains("max_keys"), "{err}");
    let stats = manager.stats();
    assert_eq!(stats.keyed[0].max_keys, 3);
    // Through serde too.
    let config: bulkheads::KeyedConfig =
        serde_json::from_value(json!({ "max_concurrent": 1, "max_keys": 7 })).unwrap();
    assert_eq!(config.max_keys_value(), 7);
}

#[test]
fn bad_keyed_tables_name_the_keyed_semaphore_and_the_field() {
    for (text, field) in [
        ("[keyed.tenants]\nmax_keys = 5", "max_concurrent"),
        (
            "[keyed.tenants]\nmax_concurrent = 1\nmax_keys = 0",
            "max_keys",
        ),
        (
            "[keyed.tenants]\nmax_concurrent = 1\nidle_ttl = \"0s\"",
            "idle_ttl",
        ),
        (
            "[keyed.tenants]\nmax_concurrent = 1\nidle_ttl = \"soon\"",
            "idle_ttl",
        ),
        (
            "[keyed.tenants]\nmax_concurrent = 1\nglobal_limit = 0",
            "global_limit",
        ),
        (
            "[keyed.tenants]\nmax_concurrent = 1\nlimit_for = 3",
            "unknown field",
        ),
        ("[keyed]\ntenants = 3", "keyed"),
    ] {
        let err = toml_err(text);
        assert_eq!(
            (err.bulkhead(), err.field()),
            ("tenants", field),
            "{text}: {err}"
        );
    }
    let err = toml_err("[keyed.tenants]\nmax_concurrent = 1\nlimit_for = 3");
    assert!(
        err.to_string().contains("global_limit"),
        "lists the fields: {err}"
    );
}

#[test]
fn apply_toml_reconfigures_keyed_semaphores_and_keeps_their_code() {
    use bulkheads::{KeyedConfig, SemaphoreConfig};
    let manager = BulkheadManager::builder()
        .keyed(
            "tenants",
            KeyedConfig::new(SemaphoreConfig::new(2))
                .limit_for(|t: &str| if t.starts_with("gold-") { 8 } else { 2 }),
        )
        .build()
        .unwrap();
    let tenants = manager.keyed("tenants").unwrap();
    tenants.call("acme", || ()).unwrap();
    tenants.call("gold-1", || ()).unwrap();
    manager
        .apply_toml("[keyed.tenants]\nmax_concurrent = 3\nmax_keys = 50")
        .unwrap();
    // The file's fields are in force; the code's tiers stay (the file has none).
    assert_eq!(tenants.config().max_keys_value(), 50);
    assert_eq!(tenants.key_stats("acme").unwrap().max_concurrent, 2);
    assert_eq!(tenants.key_stats("gold-1").unwrap().max_concurrent, 8);
    let err = manager
        .apply_toml("[keyed.tenats]\nmax_concurrent = 2")
        .unwrap_err();
    assert_eq!((err.bulkhead(), err.field()), ("tenats", "keyed"));
    // One bad entry: nothing applied.
    let err = manager
        .apply_toml(
            "[keyed.tenants]\nmax_concurrent = 2\nmax_keys = 9\n[pools.nope]\nmax_threads = 1",
        )
        .unwrap_err();
    assert_eq!((err.bulkhead(), err.field()), ("nope", "pools"));
    assert_eq!(tenants.config().max_keys_value(), 50);
    let err = manager
        .apply_toml("[keyed.tenants]\nmax_concurrent = 1\nglobal_limit = 5")
        .unwrap_err();
    assert_eq!((err.bulkhead(), err.field()), ("tenants", "global_limit"));
}

#[test]
fn per_key_metrics_read_from_toml_and_write_rows_to_json() {
    let manager =
        BulkheadManager::from_toml("[keyed.partners]\nmax_concurrent = 2\nper_key_metrics = true")
            .unwrap();
    let partners = manager.keyed("partners").unwrap();
    assert!(partners.config().per_key_metrics_value());
    partners.call("acme", || ()).unwrap();
    let json = serde_json::to_value(manager.stats()).unwrap();
    assert_eq!(
        json["keyed"][0]["per_key"],
        json!([{ "key": "acme", "limit": 2, "max_concurrent": 2, "running": 0,
                 "permitted": 1, "rejected": 0 }])
    );
    let err = toml_err("[keyed.partners]\nmax_concurrent = 2\nper_key_metrics = 1");
    assert_eq!(
        (err.bulkhead(), err.field()),
        ("partners", "per_key_metrics")
    );
}
