//! [`BulkheadManager::from_toml`]: a manager from a TOML document, where every bad entry
//! gives a [`ConfigError`] naming the bulkhead and the field.

use super::{Draft, KeyedDraft, PoolDraft, SemaphoreDraft, Value, count, field_of};
use crate::error::ConfigError;
use crate::manager::BulkheadManager;

impl Value {
    fn from_toml(value: &toml::Value) -> Self {
        match value {
            toml::Value::Integer(n) => Self::Int(i128::from(*n)),
            toml::Value::String(s) => Self::Str(s.clone()),
            toml::Value::Float(_) => Self::Other("a float"),
            toml::Value::Boolean(b) => Self::Bool(*b),
            toml::Value::Datetime(_) => Self::Other("a datetime"),
            toml::Value::Array(_) => Self::Other("an array"),
            toml::Value::Table(_) => Self::Other("a table"),
        }
    }
}

/// The bulkhead name of errors in the document's own syntax.
const TOML_NAME: &str = "<toml>";
/// The bulkhead name of errors in the manager's own settings (as the builder uses).
const MANAGER_NAME: &str = "<manager>";
/// The bulkhead name of errors in the default configurations (as the builder uses).
const DEFAULT_NAME: &str = "<default>";
/// The field of an error about a key that is not a field.
const UNKNOWN_FIELD: &str = "unknown field";
/// The manager's own keys.
const MANAGER_FIELDS: &[&str] = &[
    "max_bulkheads",
    "default_pool",
    "default_semaphore",
    "pools",
    "semaphores",
    "keyed",
];

impl BulkheadManager {
    /// Builds a manager from a TOML document; available with the feature `serde`.
    ///
    /// ```toml
    /// max_bulkheads = 100          # optional, default 1024
    ///
    /// [default_pool]               # optional: pools created on first use by name
    /// max_threads = 10
    /// queue_capacity = 5
    ///
    /// [default_semaphore]          # optional: semaphores created on first use by name
    /// max_concurrent = 25
    ///
    /// [pools.inventory]
    /// max_threads = 50             # required
    /// core_threads = 10            # default: max_threads
    /// queue_capacity = 10          # default: 0 (no queue); "unbounded" for no limit
    /// keep_alive = "30s"           # default: "60s"
    /// default_timeout = "500ms"    # default: none
    /// thread_name_prefix = "inv"   # default: the pool's name
    /// stack_size = 1048576         # bytes; default: the standard library's
    /// prestart = true              # start core_threads at once; default: false
    ///
    /// [semaphores.cache]
    /// max_concurrent = 25          # required
    /// max_wait = "20ms"            # default: no wait
    /// max_waiting = 8              # most callers waiting at once; default: no bound
    ///
    /// [keyed.tenants]              # a KeyedSemaphore: a compartment per key
    /// max_concurrent = 4           # required: each key's permits
    /// max_wait = "10ms"            # each key's wait; default: no wait
    /// max_waiting = 8              # each key's waiting bound; default: no bound
    /// max_keys = 10000             # default: 10000
    /// idle_ttl = "5m"              # default: "5m"
    /// global_limit = 200           # over all keys together; default: none
    /// per_key_metrics = false      # a series per key in the text; default: false
    /// ```
    ///
    /// Durations are strings of whole numbers with units — `ns`, `us` (or `µs`), `ms`, `s`,
    /// `m`, `h`, combined as in `"1m30s"` — or integers of milliseconds. A pool or semaphore
    /// table takes the defaults of [`PoolConfig::new`](crate::PoolConfig::new) and
    /// [`SemaphoreConfig::new`](crate::SemaphoreConfig::new) for the fields it leaves out,
    /// not those of `[default_pool]`. Every configuration is then checked as the
    /// [builder](BulkheadManager::builder) checks it.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the bulkhead (the table's name, such as `inventory`;
    /// `<default>` for the default tables, `<manager>` for the top level) and the field at
    /// fault: an unknown key (field `"unknown field"`, the key in the reason), a value of
    /// the wrong type, an unparsable duration, a missing `max_threads` or `max_concurrent`,
    /// or a value the builder rejects (such as `max_threads = 0`). A document that is not
    /// TOML gives bulkhead `<toml>`, field `"syntax"`, and the line and column in the
    /// reason.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use bulkheads::BulkheadManager;
    ///
    /// let manager = BulkheadManager::from_toml(
    ///     r#"
    ///     [pools.inventory]
    ///     max_threads = 50
    ///     queue_capacity = 10
    ///     keep_alive = "30s"
    ///     default_timeout = "500ms"
    ///
    ///     [semaphores.cache]
    ///     max_concurrent = 25
    ///     max_wait = "20ms"
    ///     "#,
    /// )?;
    /// let inventory = manager.get_pool("inventory").expect("configured");
    /// assert_eq!(inventory.config().capacity(), 60);
    /// assert_eq!(inventory.config().max_threads_value(), 50);
    /// let cache = manager.get_semaphore("cache").expect("configured");
    /// assert_eq!(cache.config().max_wait_value(), Duration::from_millis(20));
    ///
    /// let err = BulkheadManager::from_toml("[pools.inventory]\nmax_threads = 0").unwrap_err();
    /// assert_eq!((err.bulkhead(), err.field()), ("inventory", "max_threads"));
    /// let err = BulkheadManager::from_toml(
    ///     "[pools.inventory]\nmax_threads = 5\nkeep_alive = \"soon\"",
    /// )
    /// .unwrap_err();
    /// assert_eq!((err.bulkhead(), err.field()), ("inventory", "keep_alive"));
    /// # Ok::<(), bulkheads::ConfigError>(())
    /// ```
    pub fn from_toml(text: &str) -> Result<BulkheadManager, ConfigError> {
        let document: toml::Table = text.parse().map_err(|e| syntax_error(text, &e))?;
        let mut builder = BulkheadManager::builder();
        for (key, value) in document {
            builder = match key.as_str() {
                "max_bulkheads" => builder.max_bulkheads(
                    count(Value::from_toml(&value))
                        .map_err(|why| ConfigError::new(MANAGER_NAME, "max_bulkheads", why))?,
                ),
                "default_pool" => {
                    let table = table(MANAGER_NAME, "default_pool", value)?;
                    builder.default_pool_config(config_from_toml::<PoolDraft>(DEFAULT_NAME, table)?)
                }
                "default_semaphore" => {
                    let table = table(MANAGER_NAME, "default_semaphore", value)?;
                    builder.default_semaphore_config(config_from_toml::<SemaphoreDraft>(
                        DEFAULT_NAME,
                        table,
                    )?)
                }
                "pools" => {
                    for (name, value) in table(MANAGER_NAME, "pools", value)? {
                        let table = table(&name, "pools", value)?;
                        let config = config_from_toml::<PoolDraft>(&name, table)?;
                        builder = builder.pool(name, config);
                    }
                    builder
                }
                "semaphores" => {
                    for (name, value) in table(MANAGER_NAME, "semaphores", value)? {
                        let table = table(&name, "semaphores", value)?;
                        let config = config_from_toml::<SemaphoreDraft>(&name, table)?;
                        builder = builder.semaphore(name, config);
                    }
                    builder
                }
                "keyed" => {
                    for (name, value) in table(MANAGER_NAME, "keyed", value)? {
                        let table = table(&name, "keyed", value)?;
                        let config = config_from_toml::<KeyedDraft>(&name, table)?;
                        builder = builder.keyed(name, config);
                    }
                    builder
                }
                _ => return Err(unknown_field(MANAGER_NAME, &key, MANAGER_FIELDS)),
            };
        }
        builder.build()
    }
}

impl BulkheadManager {
    /// Reconfigures the manager's pools and semaphores from a TOML document in one step,
    /// for operators changing sizes without a restart (as Hystrix users did through
    /// Archaius); available with the feature `serde`.
    ///
    /// The document has [`from_toml`](BulkheadManager::from_toml)'s format, so the file a
    /// manager was built from can be edited and applied again. Each `[pools.NAME]` and
    /// `[semaphores.NAME]` table is a whole new configuration for that bulkhead, applied
    /// with [`ThreadPoolBulkhead::reconfigure`](crate::ThreadPoolBulkhead::reconfigure) or
    /// [`SemaphoreBulkhead::reconfigure`](crate::SemaphoreBulkhead::reconfigure) (never
    /// blocking; see there for what raising and lowering do). Bulkheads the document does
    /// not name keep their configuration. A `[keyed.NAME]` table reconfigures that keyed
    /// semaphore with [`KeyedSemaphore::reconfigure`](crate::KeyedSemaphore::reconfigure)
    /// (every held key at once; its `limit_for` and `adaptive`, which are code, stay). The
    /// manager's own settings (`max_bulkheads`, `[default_pool]`, `[default_semaphore]`)
    /// apply when a manager is built: here they are checked, not applied.
    ///
    /// Every entry is validated before any is applied, so an error changes nothing.
    ///
    /// # Errors
    ///
    /// The errors of [`from_toml`](BulkheadManager::from_toml), and a [`ConfigError`] naming
    /// a table whose bulkhead this manager does not have (field `pools` or `semaphores`):
    /// a typo in a name must not pass silently, and creating bulkheads is the builder's job.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::BulkheadManager;
    ///
    /// let file = "[pools.inventory]\nmax_threads = 8\n[semaphores.cache]\nmax_concurrent = 4";
    /// let manager = BulkheadManager::from_toml(file)?;
    ///
    /// // The operator raises inventory and lowers cache; both apply at once.
    /// manager.apply_toml(
    ///     "[pools.inventory]\nmax_threads = 16\nqueue_capacity = 4\n\
    ///      [semaphores.cache]\nmax_concurrent = 2",
    /// )?;
    /// let stats = manager.stats();
    /// assert_eq!(stats.pool("inventory").unwrap().max_threads, 16);
    /// assert_eq!(stats.semaphore("cache").unwrap().max_concurrent, 2);
    ///
    /// // One bad entry: nothing is applied, and the error names it.
    /// let err = manager
    ///     .apply_toml("[pools.inventory]\nmax_threads = 4\n[pools.invnetory]\nmax_threads = 4")
    ///     .unwrap_err();
    /// assert_eq!((err.bulkhead(), err.field()), ("invnetory", "pools"));
    /// assert_eq!(manager.stats().pool("inventory").unwrap().max_threads, 16);
    /// # Ok::<(), bulkheads::ConfigError>(())
    /// ```
    pub fn apply_toml(&self, text: &str) -> Result<(), ConfigError> {
        let document: toml::Table = text.parse().map_err(|e| syntax_error(text, &e))?;
        let mut pools = Vec::new();
        let mut semaphores = Vec::new();
        let mut keyed = Vec::new();
        for (key, value) in document {
            match key.as_str() {
                "max_bulkheads" => {
                    count(Value::from_toml(&value))
                        .map_err(|why| ConfigError::new(MANAGER_NAME, "max_bulkheads", why))?;
                }
                "default_pool" => {
                    let table = table(MANAGER_NAME, "default_pool", value)?;
                    let config = config_from_toml::<PoolDraft>(DEFAULT_NAME, table)?;
                    config.validate(DEFAULT_NAME)?;
                }
                "default_semaphore" => {
                    let table = table(MANAGER_NAME, "default_semaphore", value)?;
                    let config = config_from_toml::<SemaphoreDraft>(DEFAULT_NAME, table)?;
                    config.validate(DEFAULT_NAME)?;
                }
                "pools" => {
                    for (name, value) in table(MANAGER_NAME, "pools", value)? {
                        let config =
                            config_from_toml::<PoolDraft>(&name, table(&name, "pools", value)?)?;
                        config.validate(&name)?;
                        let pool = self.get_pool(&name).ok_or_else(|| {
                            ConfigError::new(&name, "pools", "is not a pool of this manager")
                        })?;
                        pools.push((pool, config));
                    }
                }
                "semaphores" => {
                    for (name, value) in table(MANAGER_NAME, "semaphores", value)? {
                        let table = table(&name, "semaphores", value)?;
                        let config = config_from_toml::<SemaphoreDraft>(&name, table)?;
                        config.validate(&name)?;
                        let semaphore = self.get_semaphore(&name).ok_or_else(|| {
                            ConfigError::new(
                                &name,
                                "semaphores",
                                "is not a semaphore of this manager",
                            )
                        })?;
                        semaphores.push((semaphore, config));
                    }
                }
                "keyed" => {
                    for (name, value) in table(MANAGER_NAME, "keyed", value)? {
                        let mut config =
                            config_from_toml::<KeyedDraft>(&name, table(&name, "keyed", value)?)?;
                        config.validate(&name)?;
                        let semaphore = self.keyed(&name).ok_or_else(|| {
                            ConfigError::new(
                                &name,
                                "keyed",
                                "is not a keyed semaphore of this manager",
                            )
                        })?;
                        // The file has no `limit_for` or `adaptive` (code, not data): the
                        // ones in force stay.
                        let old = semaphore.config();
                        config.limit_for = old.limit_for;
                        config.adaptive = old.adaptive;
                        let prepared = semaphore.prepare(config)?;
                        keyed.push((semaphore, prepared));
                    }
                }
                _ => return Err(unknown_field(MANAGER_NAME, &key, MANAGER_FIELDS)),
            }
        }
        // Everything is valid: apply. Each was validated against its own name, as
        // `reconfigure` validates, so none of these can fail.
        // The file format has no adaptive algorithm (it is code, not data): an adaptive
        // bulkhead keeps the one in force, so an operator's edit of its ceiling does not
        // silently make it fixed.
        for (pool, mut config) in pools {
            config.adaptive = pool.config().adaptive;
            pool.reconfigure(config)?;
        }
        for (semaphore, mut config) in semaphores {
            config.adaptive = semaphore.config().adaptive;
            semaphore.reconfigure(config)?;
        }
        for (semaphore, prepared) in keyed {
            semaphore.apply(prepared);
        }
        Ok(())
    }
}

/// `value` as a table, or an error naming `bulkhead` and `field`.
fn table(
    bulkhead: &str,
    field: &'static str,
    value: toml::Value,
) -> Result<toml::Table, ConfigError> {
    match value {
        toml::Value::Table(table) => Ok(table),
        other => Err(ConfigError::new(
            bulkhead,
            field,
            format!(
                "must be a table (got {})",
                Value::from_toml(&other).describe()
            ),
        )),
    }
}

/// The configuration of the bulkhead `name` from its table.
fn config_from_toml<D: Draft>(name: &str, table: toml::Table) -> Result<D::Config, ConfigError> {
    let mut draft = D::default();
    for (key, value) in &table {
        let field = field_of::<D>(key).ok_or_else(|| unknown_field(name, key, D::FIELDS))?;
        draft
            .set(field, Value::from_toml(value))
            .map_err(|why| ConfigError::new(name, field, why))?;
    }
    draft
        .finish()
        .map_err(|(field, why)| ConfigError::new(name, field, why))
}

fn unknown_field(bulkhead: &str, key: &str, expected: &[&str]) -> ConfigError {
    ConfigError::new(
        bulkhead,
        UNKNOWN_FIELD,
        format!("`{key}` (expected one of: {})", expected.join(", ")),
    )
}

/// A TOML syntax error as a [`ConfigError`], with the line and column where the parser
/// stopped.
fn syntax_error(text: &str, error: &toml::de::Error) -> ConfigError {
    let message = error.message().trim().replace('\n', "; ");
    let reason = match error.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("error at line {line}, column {column}: {message}")
        }
        None => format!("error: {message}"),
    };
    ConfigError::new(TOML_NAME, "syntax", reason)
}

#[cfg(all(test, not(bulkheads_loom)))]
mod tests {
    use super::*;

    #[test]
    fn syntax_errors_give_line_and_column() {
        let err = syntax_error_of("[pools.a]\nmax_threads = = 3\n");
        assert_eq!((err.bulkhead(), err.field()), (TOML_NAME, "syntax"));
        assert!(err.reason().contains("line 2, column"), "{err}");
    }

    fn syntax_error_of(text: &str) -> ConfigError {
        let e = text.parse::<toml::Table>().unwrap_err();
        syntax_error(text, &e)
    }
}
