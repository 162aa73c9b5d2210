//! Feature `serde`: snapshots serialize, configurations deserialize, and a manager builds
//! from TOML text ([`BulkheadManager::from_toml`](crate::BulkheadManager::from_toml)).
//!
//! Everything is written by hand, without `serde_derive`: the stats and config types live in
//! files of their own that should not grow serde attributes, and a configuration entry must
//! name its bulkhead and field when it is wrong, which a derived `Deserialize` cannot do.
//!
//! One table of fields per configuration type (`Draft`) serves both paths: serde's
//! `Deserialize` (JSON, YAML, TOML through serde — errors are the format's, with the field in
//! the message) and `BulkheadManager::from_toml` (errors are
//! [`ConfigError`](crate::ConfigError)s naming the bulkhead and the field).
//!
//! | file | holds |
//! | --- | --- |
//! | `mod.rs` | field values, configurations read one field at a time, their serde impls |
//! | `duration.rs` | durations written as `"500ms"`, `"2s"`, `"1m30s"` |
//! | `stats.rs` | `Serialize` for the snapshots |
//! | `from_toml.rs` | [`BulkheadManager::from_toml`](crate::BulkheadManager::from_toml) |

mod duration;
mod from_toml;
mod stats;

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeStruct, Serializer};

use crate::config::{PoolConfig, SemaphoreConfig};
use duration::{format_duration, parse_duration};

// ---------------------------------------------------------------------------------------------
// Field values, from serde or from TOML
// ---------------------------------------------------------------------------------------------

/// A configuration field's value as it was written, before its field gives it a meaning.
#[derive(Debug)]
enum Value {
    Int(i128),
    Str(String),
    Bool(bool),
    /// Any other type, described for the error message ("a float", "a table").
    Other(&'static str),
}

impl Value {
    /// What the value is, for "got …" in an error message.
    fn describe(&self) -> String {
        match self {
            Self::Int(n) => n.to_string(),
            Self::Str(s) => format!("{s:?}"),
            Self::Bool(_) => "a boolean".to_owned(),
            Self::Other(what) => (*what).to_owned(),
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer or a string")
    }

    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Int(i128::from(n)))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Int(i128::from(n)))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Value, E> {
        Ok(Value::Other("a float"))
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::Str(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::Str(s))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Other("null"))
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Other("null"))
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Value::Other("an array"))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Value::Other("a table"))
    }
}

/// A count or size: a non-negative integer that fits a `usize`.
fn count(value: Value) -> Result<usize, String> {
    match value {
        Value::Int(n) if n < 0 => Err(format!("must not be negative (got {n})")),
        Value::Int(n) => usize::try_from(n).map_err(|_| format!("is too large (got {n})")),
        other => Err(format!("must be an integer (got {})", other.describe())),
    }
}

/// A queue capacity: a count, or `"unbounded"` for `usize::MAX`.
fn capacity(value: Value) -> Result<usize, String> {
    match value {
        Value::Str(s) if s == UNBOUNDED => Ok(usize::MAX),
        Value::Str(s) => Err(format!("must be an integer or \"{UNBOUNDED}\" (got {s:?})")),
        other => count(other),
    }
}

/// The word a configuration uses for a queue without a limit.
const UNBOUNDED: &str = "unbounded";

/// A duration: a string such as `"500ms"`, or an integer of milliseconds.
fn duration(value: Value) -> Result<Duration, String> {
    const EXPECTED: &str =
        "must be a duration such as \"500ms\", \"2s\" or \"1m\", or an integer of milliseconds";
    match value {
        Value::Int(n) if n < 0 => Err(format!("must not be negative (got {n})")),
        Value::Int(n) => u64::try_from(n)
            .map(Duration::from_millis)
            .map_err(|_| format!("is too large (got {n})")),
        Value::Str(s) => parse_duration(&s).map_err(|why| format!("{EXPECTED} (got {s:?}: {why})")),
        other => Err(format!("{EXPECTED} (got {})", other.describe())),
    }
}

/// A string.
fn flag(value: Value) -> Result<bool, String> {
    match value {
        Value::Bool(b) => Ok(b),
        other => Err(format!("must be true or false (got {})", other.describe())),
    }
}

fn text(value: Value) -> Result<String, String> {
    match value {
        Value::Str(s) => Ok(s),
        other => Err(format!("must be a string (got {})", other.describe())),
    }
}

// ---------------------------------------------------------------------------------------------
// Configurations, one field at a time
// ---------------------------------------------------------------------------------------------

/// A configuration being read field by field.
trait Draft: Default {
    /// The configuration built.
    type Config;
    /// The type's name, for serde.
    const NAME: &'static str;
    /// Every field, as written in a configuration file.
    const FIELDS: &'static [&'static str];
    /// Sets `field` (one of `FIELDS`); the error is the reason, to follow the field's name.
    fn set(&mut self, field: &'static str, value: Value) -> Result<(), String>;
    /// The configuration, or the missing field and why.
    fn finish(self) -> Result<Self::Config, (&'static str, String)>;
}

/// A [`PoolConfig`] being read: everything but `max_threads` defaults as in
/// [`PoolConfig::new`].
struct PoolDraft {
    max_threads: Option<usize>,
    config: PoolConfig,
}

impl Default for PoolDraft {
    fn default() -> Self {
        Self {
            max_threads: None,
            config: PoolConfig::new(0),
        }
    }
}

impl Draft for PoolDraft {
    type Config = PoolConfig;
    const NAME: &'static str = "PoolConfig";
    const FIELDS: &'static [&'static str] = &[
        "max_threads",
        "core_threads",
        "queue_capacity",
        "keep_alive",
        "default_timeout",
        "thread_name_prefix",
        "stack_size",
        "prestart",
    ];

    fn set(&mut self, field: &'static str, value: Value) -> Result<(), String> {
        let c = &mut self.config;
        match field {
            "max_threads" => self.max_threads = Some(count(value)?),
            "core_threads" => c.core_threads = Some(count(value)?),
            "queue_capacity" => c.queue_capacity = capacity(value)?,
            "keep_alive" => c.keep_alive = duration(value)?,
            "default_timeout" => c.default_timeout = Some(duration(value)?),
            "thread_name_prefix" => c.thread_name_prefix = Some(text(value)?),
            "stack_size" => c.stack_size = Some(count(value)?),
            "prestart" => c.prestart = flag(value)?,
            _ => unreachable!("{field} is not in FIELDS"),
        }
        Ok(())
    }

    fn finish(self) -> Result<PoolConfig, (&'static str, String)> {
        let max_threads = self
            .max_threads
            .ok_or(("max_threads", "is required".to_owned()))?;
        Ok(PoolConfig {
            max_threads,
            ..self.config
        })
    }
}

/// A [`SemaphoreConfig`] being read: `max_wait` defaults to no wait.
#[derive(Default)]
struct SemaphoreDraft {
    max_concurrent: Option<usize>,
    max_wait: Duration,
    max_waiting: Option<usize>,
}

impl Draft for SemaphoreDraft {
    type Config = SemaphoreConfig;
    const NAME: &'static str = "SemaphoreConfig";
    const FIELDS: &'static [&'static str] = &["max_concurrent", "max_wait", "max_waiting"];

    fn set(&mut self, field: &'static str, value: Value) -> Result<(), String> {
        match field {
            "max_concurrent" => self.max_concurrent = Some(count(value)?),
            "max_wait" => self.max_wait = duration(value)?,
            "max_waiting" => self.max_waiting = Some(count(value)?),
            _ => unreachable!("{field} is not in FIELDS"),
        }
        Ok(())
    }

    fn finish(self) -> Result<SemaphoreConfig, (&'static str, String)> {
        let max_concurrent = self
            .max_concurrent
            .ok_or(("max_concurrent", "is required".to_owned()))?;
        let config = SemaphoreConfig::new(max_concurrent).max_wait(self.max_wait);
        Ok(match self.max_waiting {
            Some(n) => config.max_waiting(n),
            None => config,
        })
    }
}

/// A keyed semaphore's table: the per-key semaphore's fields and the registry's own.
#[derive(Default)]
struct KeyedDraft {
    semaphore: SemaphoreDraft,
    max_keys: Option<usize>,
    idle_ttl: Option<Duration>,
    global_limit: Option<usize>,
    per_key_metrics: bool,
}

impl Draft for KeyedDraft {
    type Config = crate::KeyedConfig;
    const NAME: &'static str = "KeyedConfig";
    const FIELDS: &'static [&'static str] = &[
        "max_concurrent",
        "max_wait",
        "max_waiting",
        "max_keys",
        "idle_ttl",
        "global_limit",
        "per_key_metrics",
    ];

    fn set(&mut self, field: &'static str, value: Value) -> Result<(), String> {
        match field {
            "max_keys" => self.max_keys = Some(count(value)?),
            "idle_ttl" => self.idle_ttl = Some(duration(value)?),
            "global_limit" => self.global_limit = Some(count(value)?),
            "per_key_metrics" => self.per_key_metrics = flag(value)?,
            _ => return self.semaphore.set(field, value),
        }
        Ok(())
    }

    fn finish(self) -> Result<crate::KeyedConfig, (&'static str, String)> {
        let mut config = crate::KeyedConfig::new(self.semaphore.finish()?);
        if let Some(n) = self.max_keys {
            config = config.max_keys(n);
        }
        if let Some(ttl) = self.idle_ttl {
            config = config.idle_ttl(ttl);
        }
        if let Some(n) = self.global_limit {
            config = config.global_limit(n);
        }
        Ok(config.per_key_metrics(self.per_key_metrics))
    }
}

/// Reads a keyed semaphore's fields (`max_concurrent` required; `max_wait`,
/// `max_waiting`, `max_keys`, `idle_ttl`, `global_limit`, `per_key_metrics`), as
/// [`KeyedConfig::validate`](crate::KeyedConfig::validate) will check them: not
/// `limit_for`, `adaptive` or a clock, which are code. Available with the feature `serde`.
///
/// ```
/// use bulkheads::KeyedConfig;
///
/// let config: KeyedConfig = serde_json::from_str(
///     r#"{ "max_concurrent": 4, "max_keys": 500, "idle_ttl": "2m", "global_limit": 100 }"#,
/// )?;
/// assert_eq!(config.max_keys_value(), 500);
/// # Ok::<(), serde_json::Error>(())
/// ```
impl<'de> Deserialize<'de> for crate::KeyedConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_config::<KeyedDraft, D>(deserializer)
    }
}

/// The field of `D` called `key`, as the `'static` name a [`ConfigError`](crate::ConfigError) carries.
fn field_of<D: Draft>(key: &str) -> Option<&'static str> {
    D::FIELDS.iter().copied().find(|f| *f == key)
}

/// The serde visitor of any [`Draft`]'s configuration.
struct DraftVisitor<D>(PhantomData<D>);

impl<'de, D: Draft> Visitor<'de> for DraftVisitor<D> {
    type Value = D::Config;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a table of {} fields", D::NAME)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<D::Config, A::Error> {
        let mut draft = D::default();
        let mut seen = Vec::with_capacity(D::FIELDS.len());
        while let Some(key) = map.next_key::<String>()? {
            let Some(field) = field_of::<D>(&key) else {
                return Err(de::Error::unknown_field(&key, D::FIELDS));
            };
            if seen.contains(&field) {
                return Err(de::Error::duplicate_field(field));
            }
            seen.push(field);
            let value: Value = map.next_value()?;
            draft
                .set(field, value)
                .map_err(|reason| de::Error::custom(format_args!("{field} {reason}")))?;
        }
        draft
            .finish()
            .map_err(|(field, reason)| de::Error::custom(format_args!("{field} {reason}")))
    }
}

/// Reads one configuration; see the [`Deserialize`] impl of [`PoolConfig`].
fn deserialize_config<'de, D: Draft, De: Deserializer<'de>>(
    deserializer: De,
) -> Result<D::Config, De::Error> {
    deserializer.deserialize_struct(D::NAME, D::FIELDS, DraftVisitor::<D>(PhantomData))
}

/// Reads a pool's configuration from a table such as TOML's
///
/// ```toml
/// max_threads = 50          # required
/// core_threads = 10         # default: max_threads
/// queue_capacity = 10       # default: 0; "unbounded" for no limit
/// keep_alive = "30s"        # default: 60 s
/// default_timeout = "500ms" # default: none
/// thread_name_prefix = "inv"
/// stack_size = 1048576      # bytes
/// prestart = true           # default: false
/// ```
///
/// Durations are strings of whole numbers with units — `ns`, `us` (or `µs`), `ms`, `s`,
/// `m`, `h`, combined as in `"1m30s"` — or integers of milliseconds. Fields left out default
/// as in [`PoolConfig::new`]; unknown fields are errors. The values are checked later, by
/// [`PoolConfig::validate`] in every constructor. The format must describe itself (JSON,
/// TOML, YAML); available with the feature `serde`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use bulkheads::PoolConfig;
///
/// let config: PoolConfig = serde_json::from_str(
///     r#"{ "max_threads": 50, "queue_capacity": 10, "keep_alive": "30s", "default_timeout": 500 }"#,
/// )?;
/// assert_eq!(
///     config,
///     PoolConfig::new(50)
///         .queue_capacity(10)
///         .keep_alive(Duration::from_secs(30))
///         .default_timeout(Duration::from_millis(500))
/// );
/// # Ok::<(), serde_json::Error>(())
/// ```
impl<'de> Deserialize<'de> for PoolConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_config::<PoolDraft, D>(deserializer)
    }
}

/// Reads a semaphore's configuration from a table such as TOML's
///
/// ```toml
/// max_concurrent = 25   # required
/// max_wait = "20ms"     # default: no wait
/// ```
///
/// Durations are written as for [`PoolConfig`]; available with the feature `serde`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use bulkheads::SemaphoreConfig;
///
/// let config: SemaphoreConfig =
///     serde_json::from_str(r#"{ "max_concurrent": 25, "max_wait": "20ms" }"#)?;
/// assert_eq!(config, SemaphoreConfig::new(25).max_wait(Duration::from_millis(20)));
/// # Ok::<(), serde_json::Error>(())
/// ```
impl<'de> Deserialize<'de> for SemaphoreConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_config::<SemaphoreDraft, D>(deserializer)
    }
}

/// Writes the fields that differ from [`PoolConfig::new`]'s defaults, in the form its
/// `Deserialize` reads: durations as strings (`"500ms"`), an unbounded queue as
/// `"unbounded"`. Available with the feature `serde`.
impl Serialize for PoolConfig {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let len = 1
            + usize::from(self.core_threads.is_some())
            + usize::from(self.queue_capacity != 0)
            + usize::from(self.keep_alive != Self::DEFAULT_KEEP_ALIVE)
            + usize::from(self.default_timeout.is_some())
            + usize::from(self.thread_name_prefix.is_some())
            + usize::from(self.stack_size.is_some())
            + usize::from(self.prestart);
        let mut s = serializer.serialize_struct("PoolConfig", len)?;
        s.serialize_field("max_threads", &self.max_threads)?;
        if let Some(core) = self.core_threads {
            s.serialize_field("core_threads", &core)?;
        }
        if self.queue_capacity == usize::MAX {
            s.serialize_field("queue_capacity", UNBOUNDED)?;
        } else if self.queue_capacity != 0 {
            s.serialize_field("queue_capacity", &self.queue_capacity)?;
        }
        if self.keep_alive != Self::DEFAULT_KEEP_ALIVE {
            s.serialize_field("keep_alive", &format_duration(self.keep_alive))?;
        }
        if let Some(timeout) = self.default_timeout {
            s.serialize_field("default_timeout", &format_duration(timeout))?;
        }
        if let Some(prefix) = &self.thread_name_prefix {
            s.serialize_field("thread_name_prefix", prefix)?;
        }
        if let Some(bytes) = self.stack_size {
            s.serialize_field("stack_size", &bytes)?;
        }
        if self.prestart {
            s.serialize_field("prestart", &true)?;
        }
        s.end()
    }
}

/// Writes `max_concurrent` and `max_wait` (a string such as `"20ms"`), the form its
/// `Deserialize` reads. Available with the feature `serde`.
impl Serialize for SemaphoreConfig {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // `max_waiting` only when bounded: unbounded configurations keep their old form.
        let fields = 2 + usize::from(self.max_waiting.is_some());
        let mut s = serializer.serialize_struct("SemaphoreConfig", fields)?;
        s.serialize_field("max_concurrent", &self.max_concurrent)?;
        s.serialize_field("max_wait", &format_duration(self.max_wait))?;
        match self.max_waiting {
            Some(n) => s.serialize_field("max_waiting", &n)?,
            None => s.skip_field("max_waiting")?,
        }
        s.end()
    }
}
