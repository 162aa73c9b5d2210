//! A connection-pool bulkhead on a real embedded database: transactional and analytics work
//! on one SQLite file, each in its own compartment with its own connections.
//!
//! `cargo run --release --example sqlite` — about ten seconds.
//!
//! Each compartment is a `ConnectionPoolBulkhead`: every worker thread owns one SQLite
//! connection (opened on its first task, kept across tasks, closed when it retires), so a
//! pool of N threads is a connection pool of N connections and the two cannot drift apart. The
//! database is a temporary file in WAL mode: readers never block the writer. Transactional
//! work is short write transactions offered at a steady rate; analytics is full-scan
//! GROUP BY reports run back to back by several clients. The program measures
//! transactional latency with analytics idle and with analytics hammering, first with one
//! bulkhead per workload (3 transactional connections, 1 analytics connection), then with
//! one shared pool of the same 4 connections.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use bulkheads::{BulkheadError, ConnectionPoolBulkhead, PoolConfig};
use rusqlite::{Connection, TransactionBehavior};

/// Rows in the orders table: enough that one analytics report takes 100 ms or more.
const ORDERS: u32 = 300_000;
const ACCOUNTS: i64 = 1_000;
/// Length of each measured phase.
const PHASE: Duration = Duration::from_millis(2_000);
/// Transactional load: this many clients, each offering one transaction per interval
/// (200 transactions/s in all).
const TX_CLIENTS: u32 = 2;
const TX_INTERVAL: Duration = Duration::from_millis(10);
/// A transaction not done this long after it was due gives up.
const TX_DEADLINE: Duration = Duration::from_secs(1);
/// Analytics clients, each running reports back to back.
const ANALYTICS_CLIENTS: usize = 4;

/// The database file, set once before any connection opens.
static DB_PATH: OnceLock<PathBuf> = OnceLock::new();

/// A compartment of SQLite connections: one per worker thread.
type Db = Arc<ConnectionPoolBulkhead<Connection>>;

fn open() -> rusqlite::Result<Connection> {
    let path = DB_PATH
        .get()
        .expect("DB_PATH is set before any worker starts");
    let conn = Connection::open(path)?;
    // Writers queue inside SQLite for the write lock rather than fail at once.
    conn.busy_timeout(Duration::from_secs(2))?;
    // WAL with synchronous=NORMAL: commits do not fsync; checkpoints do.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // No checkpoints on the request path. A long analytics read pins the WAL, and then
    // every commit past the auto-checkpoint size tries (and fails) to checkpoint it: a
    // resource the two workloads share inside SQLite, which no bulkhead can separate.
    // Measured here, it took transactional p99 from a few ms to tens or hundreds. The WAL
    // is checkpointed between phases instead, as a background job would.
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    Ok(conn)
}

/// A bulkhead whose `threads` workers each own a connection.
fn compartment(name: &str, threads: usize, queue: usize) -> Result<Db, bulkheads::ConfigError> {
    let config = PoolConfig::new(threads)
        .core_threads(threads)
        .queue_capacity(queue);
    Ok(Arc::new(ConnectionPoolBulkhead::new(name, config, open)?))
}

/// The transactional workload: take an order, debit the account, in one write transaction.
fn place_order(conn: &mut Connection, order: i64) -> rusqlite::Result<()> {
    {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let account = (order % ACCOUNTS) * 7_919 % ACCOUNTS;
        let amount = order % 90 + 10;
        let balance: i64 = tx
            .prepare_cached("SELECT balance FROM accounts WHERE id = ?1")?
            .query_row([account], |row| row.get(0))?;
        tx.prepare_cached("UPDATE accounts SET balance = ?1 WHERE id = ?2")?
            .execute((balance - amount, account))?;
        tx.prepare_cached("INSERT INTO orders (account, amount, created) VALUES (?1, ?2, ?3)")?
            .execute((account, amount, order))?;
        tx.commit()
    }
}

/// The analytics workload: a report that scans and groups the whole orders table.
fn revenue_report(conn: &mut Connection) -> rusqlite::Result<i64> {
    {
        conn.prepare_cached(
            "SELECT COUNT(*) FROM (
                 SELECT account % 64 AS segment, COUNT(*), SUM(amount) AS revenue,
                        AVG(amount), MAX(created)
                 FROM orders GROUP BY segment ORDER BY revenue DESC)",
        )?
        .query_row([], |row| row.get(0))
    }
}

/// Creates the database with its accounts and orders.
fn create(path: &Path) -> rusqlite::Result<()> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.execute_batch(&format!(
        "CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL);
         CREATE TABLE orders (id INTEGER PRIMARY KEY, account INTEGER NOT NULL,
                              amount INTEGER NOT NULL, created INTEGER NOT NULL);
         BEGIN;
         WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {accounts})
         INSERT INTO accounts (id, balance) SELECT i, 1000000 FROM n;
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {ORDERS})
         INSERT INTO orders (account, amount, created)
             SELECT abs(random()) % {ACCOUNTS}, abs(random()) % 10000, i FROM n;
         COMMIT;",
        accounts = ACCOUNTS - 1,
    ))
}

/// Folds the WAL back into the database file: the background job that replaces
/// auto-checkpoints (see [`open`]). Runs between phases, when no transaction is open.
fn checkpoint() -> rusqlite::Result<()> {
    open()?.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
}

/// What one phase measured.
struct Figures {
    tx_latency: Vec<Duration>,
    tx_timed_out: usize,
    reports: usize,
}

/// Offers the transactional load for one phase, with `hammer` analytics clients running
/// reports back to back beside it. Every loop is bounded by the phase's end.
fn phase(transactional: &Db, analytics: &Db, hammer: bool) -> Result<Figures, String> {
    let start = Instant::now();
    let end = start + PHASE;
    let reporters: Vec<_> = (0..if hammer { ANALYTICS_CLIENTS } else { 0 })
        .map(|_| {
            let analytics = Arc::clone(analytics);
            thread::spawn(move || {
                let mut reports = 0;
                while Instant::now() < end {
                    // The pools' queues hold every client, so a report waits for a
                    // connection rather than being rejected.
                    analytics
                        .execute(revenue_report)
                        .map_err(|err: BulkheadError| err.to_string())?
                        .map_err(|err| format!("report failed: {err}"))?;
                    reports += 1;
                }
                Ok::<usize, String>(reports)
            })
        })
        .collect();
    let clients: Vec<_> = (0..TX_CLIENTS)
        .map(|client| {
            let transactional = Arc::clone(transactional);
            thread::spawn(move || {
                let mut latencies = Vec::new();
                let mut timed_out = 0;
                for k in 0_u32.. {
                    // Open loop: each transaction is due on schedule, late or not.
                    let due = start + TX_INTERVAL * k + TX_INTERVAL * client / TX_CLIENTS;
                    if due >= end {
                        break;
                    }
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        thread::sleep(wait); // pacing the load, not synchronising threads
                    }
                    let order = (i64::from(client) << 32) | i64::from(k);
                    // Latency and deadline count from when the transaction was due, not
                    // from when this client got round to it: a client held up by one slow
                    // call must not hide the calls it could not make meanwhile.
                    let left = (due + TX_DEADLINE).saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        timed_out += 1;
                        continue;
                    }
                    match transactional.execute_timeout(left, move |conn| place_order(conn, order))
                    {
                        Ok(Ok(())) => latencies.push(due.elapsed()),
                        Err(err) if err.is_timeout() => timed_out += 1,
                        Ok(Err(err)) => return Err(format!("transaction failed: {err}")),
                        Err(err) => return Err(err.to_string()),
                    }
                }
                Ok((latencies, timed_out))
            })
        })
        .collect();

    let mut figures = Figures {
        tx_latency: Vec::new(),
        tx_timed_out: 0,
        reports: 0,
    };
    for client in clients {
        let (latencies, timed_out) = client.join().map_err(|_| "a client panicked")??;
        figures.tx_latency.extend(latencies);
        figures.tx_timed_out += timed_out;
    }
    for reporter in reporters {
        figures.reports += reporter.join().map_err(|_| "a client panicked")??;
    }
    figures.tx_latency.sort();
    Ok(figures)
}

fn percentile(sorted: &[Duration], p: usize) -> f64 {
    sorted
        .get((sorted.len() * p).div_ceil(100).saturating_sub(1))
        .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
}

/// Removes the temporary database when the program ends, however it ends.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir =
        TempDir(std::env::temp_dir().join(format!("bulkheads-sqlite-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0)?;
    let path = dir.0.join("shop.db");
    create(&path)?;
    DB_PATH.set(path.clone()).map_err(|_| "DB_PATH set twice")?;

    // One report, timed on its own, to show what "heavy" means here.
    let begun = Instant::now();
    revenue_report(&mut open()?)?;
    println!(
        "database: {} (WAL), {ORDERS} orders; one analytics report alone takes {:.0} ms",
        path.display(),
        begun.elapsed().as_secs_f64() * 1e3
    );
    println!(
        "load: {} transactions/s offered (read, update, insert, commit); {ANALYTICS_CLIENTS} analytics clients running reports back to back; {} s a phase",
        TX_CLIENTS as f64 / TX_INTERVAL.as_secs_f64(),
        PHASE.as_secs_f64()
    );
    println!();

    // Each worker thread is one connection. The queues hold every client, so nobody is
    // rejected: what changes between the layouts is who waits for a connection.
    let transactional = compartment("transactional", 3, 3)?;
    let analytics = compartment("analytics", 1, 4)?;
    let shared = compartment("shared", 4, 7)?;
    let layouts = [
        (
            "bulkheads (3 + 1 connections)",
            Arc::clone(&transactional),
            Arc::clone(&analytics),
        ),
        (
            "one shared pool (4 connections)",
            Arc::clone(&shared),
            Arc::clone(&shared),
        ),
    ];

    println!(
        "{:<33}{:<22}{:>16}{:>10}{:>14}{:>13}",
        "layout", "analytics", "tx p50 / p99 ms", "tx/s", "tx timed out", "reports/s"
    );
    let mut p99 = Vec::new();
    for (name, transactional, analytics) in &layouts {
        for hammer in [false, true] {
            checkpoint()?;
            let figures = phase(transactional, analytics, hammer)?;
            let secs = PHASE.as_secs_f64();
            println!(
                "{name:<33}{:<22}{:>16}{:>10.1}{:>14}{:>13}",
                if hammer { "hammering" } else { "idle" },
                format!(
                    "{:.1} / {:.1}",
                    percentile(&figures.tx_latency, 50),
                    percentile(&figures.tx_latency, 99)
                ),
                figures.tx_latency.len() as f64 / secs,
                figures.tx_timed_out,
                if hammer {
                    format!("{:.1}", figures.reports as f64 / secs)
                } else {
                    "-".into()
                },
            );
            p99.push(percentile(&figures.tx_latency, 99));
        }
    }
    println!();
    println!(
        "transactional p99, analytics idle → hammering: {:.1} → {:.1} ms with bulkheads, {:.1} → {:.1} ms with one shared pool",
        p99[0], p99[1], p99[2], p99[3]
    );
    println!();
    for db in [&transactional, &analytics, &shared] {
        db.shutdown();
        // Every worker has exited, so every connection is closed.
        db.await_termination(Duration::from_secs(5));
        let s = db.stats();
        println!(
            "{:<14} {} threads = {} connections; {} calls completed, {} timed out, {} connect failures",
            s.name, s.max_threads, s.max_threads, s.completed, s.timed_out, s.connect_failures
        );
    }
    Ok(())
}
