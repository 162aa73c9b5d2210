//! A throwaway PostgreSQL cluster, and the checkout-and-reports scenario that
//! `tests/postgres.rs` asserts on and `examples/postgres.rs` prints. Both include this file
//! with `#[path]`, so the scenario they measure is one and the same.
//!
//! The cluster is `initdb` into a fresh temporary directory and `pg_ctl -w start` on a free
//! loopback port, with its Unix socket in that directory; dropping the [`Cluster`] (also
//! while unwinding) stops it and removes the directory. `initdb` refuses to run as root, so
//! as root the binaries run through `runuser` as the `postgres` user (created by the
//! distribution's package), or `nobody` where there is none.

#![allow(dead_code)] // the test and the example each use their own subset

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bulkheads::{ConnectionPoolBulkhead, Deadline, PoolConfig};
use postgres::error::SqlState;
use postgres::{Client, NoTls, Transaction};

/// Set (CI sets it), a missing PostgreSQL fails instead of skipping.
pub const REQUIRE: &str = "BULKHEADS_REQUIRE_POSTGRES";
/// The superuser `initdb` creates; the cluster trusts local connections, so no password.
const USER: &str = "bulkheads";

/// A PostgreSQL server of this process's own, stopped and deleted on drop.
#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    /// The user the binaries run as when this process is root.
    run_as: Option<String>,
    port: u16,
    started: bool,
}

impl Cluster {
    /// Starts a cluster, or returns `None` (after saying so) where PostgreSQL is not
    /// installed — unless [`REQUIRE`] is set, then it panics.
    ///
    /// # Panics
    ///
    /// If PostgreSQL is installed but the cluster does not start (with the server's log).
    pub fn start_or_skip() -> Option<Cluster> {
        let Some(bin) = find_bin() else {
            if std::env::var_os(REQUIRE).is_some() {
                panic!(
                    "{REQUIRE} is set but no initdb and pg_ctl were found \
                     ({BIN_DIR}, PATH, /usr/lib/postgresql/*/bin)"
                );
            }
            eprintln!(
                "SKIPPED: PostgreSQL (initdb, pg_ctl) was not found in {BIN_DIR}, PATH or \
                 /usr/lib/postgresql/*/bin (set {REQUIRE} to fail instead)"
            );
            return None;
        };
        Some(Cluster::start(bin))
    }

    fn start(bin: PathBuf) -> Cluster {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        stop_orphans(&bin);
        let dir = std::env::temp_dir().join(format!(
            "bulkheads-pg-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir); // left by a killed run with a reused pid
        fs::create_dir_all(&dir).expect("create the cluster's directory");
        let run_as = run_as();
        if run_as.is_some() {
            // initdb, running as another user, creates the data directory in here and the
            // server puts its socket and log here.
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(&dir, fs::Permissions::from_mode(0o777))
                    .expect("open the cluster's directory to its user");
            }
        }
        let mut cluster = Cluster {
            dir,
            bin,
            run_as,
            port: 0,
            started: false,
        };
        let data = cluster.data();
        let out = cluster.run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                USER.as_ref(),
                "--auth=trust".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--no-sync".as_ref(),
            ],
        );
        assert!(out.status.success(), "initdb failed: {}", text(&out));
        for _ in 0..5 {
            cluster.port = free_port();
            // A scratch cluster: no durability, so nothing on the request path waits for
            // the disk (the slow work in the scenario is `pg_sleep`, not I/O).
            let options = format!(
                "-p {} -k '{}' -c listen_addresses=127.0.0.1 -c fsync=off \
                 -c synchronous_commit=off -c full_page_writes=off",
                cluster.port,
                cluster.dir.display()
            );
            let log = cluster.dir.join("server.log");
            let out = cluster.run(
                "pg_ctl",
                &[
                    "-D".as_ref(),
                    data.as_os_str(),
                    "-l".as_ref(),
                    log.as_os_str(),
                    "-o".as_ref(),
                    options.as_ref(),
                    "-w".as_ref(),
                    "-t".as_ref(),
                    "60".as_ref(),
                    "start".as_ref(),
                ],
            );
            if out.status.success() {
                cluster.started = true;
                return cluster;
            }
            // Most likely the port was taken between probing and binding: try another.
        }
        let log = fs::read_to_string(cluster.dir.join("server.log")).unwrap_or_default();
        panic!("PostgreSQL did not start on any of 5 ports; server log:\n{log}");
    }

    /// Connection settings for this cluster (TCP on loopback).
    pub fn config(&self) -> postgres::Config {
        let mut config = postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(self.port)
            .user(USER)
            .dbname("postgres")
            .connect_timeout(Duration::from_secs(10));
        config
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Runs one of the PostgreSQL binaries, as [`Cluster::run_as`] if set.
    fn run(&self, program: &str, args: &[&std::ffi::OsStr]) -> Output {
        let program = self.bin.join(program);
        let mut command = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&program);
                c
            }
            None => Command::new(&program),
        };
        // The working directory must be one the server's user can enter.
        command
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("could not run {}: {e}", program.display()))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.started {
            let data = self.data();
            // Immediate: nothing here is worth a clean shutdown, and it does not wait for
            // connections a failed test left open.
            let _ = self.run(
                "pg_ctl",
                &[
                    "-D".as_ref(),
                    data.as_os_str(),
                    "-m".as_ref(),
                    "immediate".as_ref(),
                    "-w".as_ref(),
                    "stop".as_ref(),
                ],
            );
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Stops and removes the clusters of earlier runs whose process is gone without dropping
/// its [`Cluster`] (an abort, a kill): their servers would otherwise run on, each holding a
/// port and shared memory. Linux only (a process is alive while `/proc/<pid>` exists).
fn stop_orphans(bin: &Path) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name
            .to_str()
            .and_then(|n| n.strip_prefix("bulkheads-pg-"))
            .and_then(|n| n.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
            // Dropping it stops the server (if one runs there) and removes the directory.
            drop(Cluster {
                dir: entry.path(),
                bin: bin.to_path_buf(),
                run_as: run_as(),
                port: 0,
                started: entry.path().join("data").join("postmaster.pid").exists(),
            });
        }
    }
}

/// Where PostgreSQL's binaries are, if not found on their own (`/usr/local/pgsql/bin`, a
/// Homebrew prefix); set, it is the only place looked in.
pub const BIN_DIR: &str = "BULKHEADS_POSTGRES_BIN";

/// The first directory holding both `initdb` and `pg_ctl`: [`BIN_DIR`] if set; else `PATH`,
/// then Debian's `/usr/lib/postgresql/<version>/bin` (not on `PATH`), newest version first.
fn find_bin() -> Option<PathBuf> {
    let has_both = |d: &PathBuf| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Some(dir) = std::env::var_os(BIN_DIR) {
        return Some(PathBuf::from(dir)).filter(has_both);
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .collect();
    versions.sort_by_key(|v| std::cmp::Reverse(v.0));
    dirs.extend(versions.into_iter().map(|(_, dir)| dir));
    dirs.into_iter().find(has_both)
}

/// `None` unless this process is root; then `postgres` if that user exists, else `nobody`.
fn run_as() -> Option<String> {
    let id = |user: Option<&str>| {
        Command::new("id")
            .arg("-u")
            .args(user)
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    if id(None).as_deref() != Some("0") {
        return None;
    }
    Some(if id(Some("postgres")).is_some() {
        "postgres".to_owned()
    } else {
        "nobody".to_owned()
    })
}

fn free_port() -> u16 {
    // Bound and dropped: free unless another process takes it in between (then retried).
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

// ---------------------------------------------------------------------------------------
// Deadlines that reach the server.

/// The `statement_timeout` (ms) for the time `deadline` has left, rounded up; 1 once it
/// has passed, because 0 would switch the timeout off in PostgreSQL — an expired deadline
/// must mean "cancel at once", never "no limit".
pub fn statement_timeout_ms(deadline: Deadline) -> u64 {
    deadline.remaining_millis_checked().unwrap_or(1)
}

/// Opens a transaction whose statements the server cancels (SQLSTATE 57014) once the
/// calling task's deadline passes. `SET LOCAL` ends with the transaction, so the next task
/// on this worker's connection does not inherit it. Without a deadline, a plain transaction.
pub fn transaction_with_deadline(client: &mut Client) -> Result<Transaction<'_>, postgres::Error> {
    let mut tx = client.transaction()?;
    if let Some(deadline) = Deadline::current() {
        let ms = statement_timeout_ms(deadline);
        tx.batch_execute(&format!("SET LOCAL statement_timeout = {ms}"))?;
    }
    Ok(tx)
}

// ---------------------------------------------------------------------------------------
// The scenario: checkout at 200/s, and a burst of slow reports.

/// Checkout load: this many clients, each offering one call per interval (200 calls/s).
pub const CHECKOUT_CLIENTS: u32 = 8;
pub const CHECKOUT_INTERVAL: Duration = Duration::from_millis(40);
/// A checkout not done this long after it was due has failed its caller.
pub const CHECKOUT_DEADLINE: Duration = Duration::from_millis(500);
/// How long checkout is offered, and when in that time the reports arrive.
pub const RUN: Duration = Duration::from_millis(4_500);
pub const BURST_AT: Duration = Duration::from_millis(500);
/// The burst: this many reports at once, each a two-second query. In the shared pool the
/// first 12 take every thread for two seconds, so the checkouts due in the first 1.5 s of
/// that (about 300) wait past their deadline.
pub const REPORTS: usize = 20;
pub const REPORT_SQL: &str = "SELECT pg_sleep(2.0)";
pub const REPORT_DEADLINE: Duration = Duration::from_secs(15);
/// Threads (= connections) and queue lengths. The shared pool has the sum of both.
pub const CHECKOUT_THREADS: usize = 4;
pub const CHECKOUT_QUEUE: usize = 4;
pub const REPORT_THREADS: usize = 8;
/// Room for the whole burst: 8 running, 12 waiting.
pub const REPORT_QUEUE: usize = 12;
const STOCK_ITEMS: i32 = 1_000;

/// One bulkhead per workload, or one pool for both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    Bulkheads,
    Shared,
}

/// What checkout saw during one run, and how many reports finished.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub layout: Layout,
    /// Checkout calls offered (every due one, made or not).
    pub offered: usize,
    pub ok: usize,
    /// The deadline passed: in the queue, running, or before the call could be made.
    pub timeouts: usize,
    /// The bulkhead was full.
    pub rejected: usize,
    /// Anything else (a database error), with the first one's text.
    pub errors: usize,
    pub first_error: Option<String>,
    /// Latency of the successful calls, from when they were due (a late client's wait
    /// counts: no coordinated omission).
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub reports_done: usize,
}

type Db = Arc<ConnectionPoolBulkhead<Pg>>;

/// The driver's own client, as a user would hold it: `ConnectionPoolBulkhead` closes each
/// worker's connection as the worker retires, while the thread-locals the blocking client
/// closes through (its tokio runtime's) are still alive. (Before that fix, closing it from
/// the slot's destructor at thread exit aborted the process.)
pub type Pg = Client;

/// Opens one connection without TLS (the cluster is on loopback).
pub fn connect(config: &postgres::Config) -> Result<Pg, postgres::Error> {
    config.connect(NoTls)
}

/// Creates the scenario's tables (idempotent; prefixed, for a `DATABASE_URL` of the user's).
pub fn prepare(config: &postgres::Config) -> Result<(), postgres::Error> {
    let mut client = config.connect(NoTls)?;
    client.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS bulkheads_stock (id int PRIMARY KEY, qty bigint NOT NULL);
         INSERT INTO bulkheads_stock SELECT i, 1000000 FROM generate_series(1, {STOCK_ITEMS}) i
             ON CONFLICT DO NOTHING;
         CREATE TABLE IF NOT EXISTS bulkheads_orders (
             id bigserial PRIMARY KEY, item int NOT NULL, at timestamptz NOT NULL DEFAULT now());"
    ))
}

/// A bulkhead whose `threads` workers each own one connection to `config`'s database.
pub fn compartment(
    name: &str,
    config: &postgres::Config,
    threads: usize,
    queue: usize,
) -> Result<Db, bulkheads::ConfigError> {
    let config = config.clone();
    let pool = PoolConfig::new(threads)
        .core_threads(threads)
        .queue_capacity(queue);
    let db = ConnectionPoolBulkhead::new(name, pool, move || connect(&config))?
        .health_check(|client: &mut Pg| !client.is_closed());
    Ok(Arc::new(db))
}

/// The checkout transaction: take one item from stock and record the order.
fn checkout(client: &mut Client, order: u32) -> Result<(), postgres::Error> {
    let item = i32::try_from(order.wrapping_mul(7_919) % STOCK_ITEMS as u32).unwrap_or(0) + 1;
    let mut tx = transaction_with_deadline(client)?;
    tx.execute(
        "UPDATE bulkheads_stock SET qty = qty - 1 WHERE id = $1",
        &[&item],
    )?;
    tx.execute("INSERT INTO bulkheads_orders (item) VALUES ($1)", &[&item])?;
    tx.commit()
}

/// A slow report (`pg_sleep`), also bounded by its deadline on the server.
fn report(client: &mut Client) -> Result<(), postgres::Error> {
    let mut tx = transaction_with_deadline(client)?;
    tx.batch_execute(REPORT_SQL)?;
    tx.commit()
}

/// Starts every worker (so every connection is open) before the measured run: `threads`
/// tasks that wait for each other can only run on `threads` different workers.
pub fn warm(db: &Db, threads: usize) {
    let barrier = Arc::new(Barrier::new(threads));
    let callers: Vec<_> = (0..threads)
        .map(|_| {
            let (db, barrier) = (Arc::clone(db), Arc::clone(&barrier));
            thread::spawn(move || {
                db.execute_timeout(Duration::from_secs(30), move |client: &mut Pg| {
                    barrier.wait();
                    client.simple_query("SELECT 1").map(drop)
                })
            })
        })
        .collect();
    for caller in callers {
        let result = caller.join().expect("warm-up caller panicked");
        result
            .expect("warm-up call failed")
            .expect("warm-up query failed");
    }
}

#[derive(Default)]
struct Tally {
    offered: usize,
    ok: Vec<Duration>,
    timeouts: usize,
    rejected: usize,
    errors: usize,
    first_error: Option<String>,
}

/// Runs the scenario once in `layout` against `config`'s database (see [`prepare`]).
pub fn run(config: &postgres::Config, layout: Layout) -> Outcome {
    let (checkout_db, report_db) = match layout {
        Layout::Bulkheads => {
            let checkout = compartment("checkout", config, CHECKOUT_THREADS, CHECKOUT_QUEUE)
                .expect("checkout config");
            let reports = compartment("reports", config, REPORT_THREADS, REPORT_QUEUE)
                .expect("reports config");
            warm(&checkout, CHECKOUT_THREADS);
            warm(&reports, REPORT_THREADS);
            (checkout, reports)
        }
        Layout::Shared => {
            let shared = compartment(
                "shared",
                config,
                CHECKOUT_THREADS + REPORT_THREADS,
                CHECKOUT_QUEUE + REPORT_QUEUE,
            )
            .expect("shared config");
            warm(&shared, CHECKOUT_THREADS + REPORT_THREADS);
            (Arc::clone(&shared), shared)
        }
    };

    let tally = Arc::new(Mutex::new(Tally::default()));
    let start = Instant::now() + Duration::from_millis(50);
    let end = start + RUN;
    let clients: Vec<_> = (0..CHECKOUT_CLIENTS)
        .map(|client| {
            let (db, tally) = (Arc::clone(&checkout_db), Arc::clone(&tally));
            thread::spawn(move || {
                // Spread the clients over the interval: 200 evenly spaced calls a second.
                let offset = CHECKOUT_INTERVAL * client / CHECKOUT_CLIENTS;
                let mut due = start + offset;
                let mut order = client;
                while due < end {
                    let now = Instant::now();
                    if now < due {
                        thread::sleep(due - now);
                    }
                    let give_up = due + CHECKOUT_DEADLINE;
                    let left = give_up.saturating_duration_since(Instant::now());
                    let result = if left.is_zero() {
                        None // this client was stuck past this call's whole deadline
                    } else {
                        Some(db.execute_timeout(left, move |c: &mut Pg| checkout(c, order)))
                    };
                    let latency = due.elapsed();
                    let mut t = tally.lock().unwrap();
                    t.offered += 1;
                    match result {
                        Some(Ok(Ok(()))) => t.ok.push(latency),
                        None => t.timeouts += 1,
                        Some(Err(e)) if e.is_timeout() => t.timeouts += 1,
                        // The server's statement timeout (from the same deadline) fired
                        // before the caller's own wait ended: a timeout all the same.
                        Some(Ok(Err(e))) if e.code() == Some(&SqlState::QUERY_CANCELED) => {
                            t.timeouts += 1
                        }
                        Some(Err(e)) if e.is_rejected() => t.rejected += 1,
                        Some(Err(e)) => {
                            t.errors += 1;
                            t.first_error.get_or_insert_with(|| e.to_string());
                        }
                        Some(Ok(Err(e))) => {
                            t.errors += 1;
                            t.first_error.get_or_insert_with(|| e.to_string());
                        }
                    }
                    drop(t);
                    due += CHECKOUT_INTERVAL;
                    order += CHECKOUT_CLIENTS;
                }
            })
        })
        .collect();

    let burst = start + BURST_AT;
    let reporters: Vec<_> = (0..REPORTS)
        .map(|_| {
            let db = Arc::clone(&report_db);
            thread::spawn(move || {
                let now = Instant::now();
                if now < burst {
                    thread::sleep(burst - now);
                }
                matches!(
                    db.execute_timeout(REPORT_DEADLINE, |c: &mut Pg| report(c)),
                    Ok(Ok(()))
                )
            })
        })
        .collect();

    for client in clients {
        client.join().expect("checkout client panicked");
    }
    let reports_done = reporters
        .into_iter()
        .map(|r| r.join().expect("reporter panicked"))
        .filter(|&done| done)
        .count();
    checkout_db.shutdown();
    report_db.shutdown();

    let mut t = Arc::try_unwrap(tally)
        .ok()
        .expect("every client has finished")
        .into_inner()
        .unwrap();
    t.ok.sort_unstable();
    let pct = |p: usize| {
        t.ok.get((t.ok.len() * p / 100).min(t.ok.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Outcome {
        layout,
        offered: t.offered,
        ok: t.ok.len(),
        timeouts: t.timeouts,
        rejected: t.rejected,
        errors: t.errors,
        first_error: t.first_error.take(),
        p50: pct(50),
        p99: pct(99),
        max: t.ok.last().copied().unwrap_or_default(),
        reports_done,
    }
}

/// The outcomes as a table, one row per layout.
pub fn table(outcomes: &[Outcome]) -> String {
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
    let mut out = format!(
        "{:<10} {:>8} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7} {:>8}\n",
        "layout", "offered", "ok", "p50", "p99", "max", "timeouts", "rejected", "errors", "reports"
    );
    for o in outcomes {
        out.push_str(&format!(
            "{:<10} {:>8} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7} {:>5}/{}\n",
            match o.layout {
                Layout::Bulkheads => "bulkheads",
                Layout::Shared => "shared",
            },
            o.offered,
            o.ok,
            ms(o.p50),
            ms(o.p99),
            ms(o.max),
            o.timeouts,
            o.rejected,
            o.errors,
            o.reports_done,
            REPORTS
        ));
    }
    out
}
