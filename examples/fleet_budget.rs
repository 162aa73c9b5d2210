//! Three processes share one budget of 5 against a fake "database" that counts its
//! connections and prints the peak.
//!
//! ```text
//! cargo run --features redis --example fleet_budget
//! ```
//!
//! Uses the Redis at `REDIS_URL`, or starts a `redis-server` of its own on a free loopback
//! port. The parent runs the database (a TCP listener) and starts three copies of itself,
//! each with a pool of 4 threads (`PoolConfig::global_limit`) and 4 callers making 25 calls;
//! every call holds a lease for the connection's whole
//! life. The database's peak of concurrent connections never exceeds the budget, though 12
//! threads in 3 processes want in.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use bulkheads::{PoolConfig, RedisSemaphore, RedisSemaphoreConfig, ThreadPoolBulkhead};

const BUDGET: usize = 5;
const PROCESSES: usize = 3;
const THREADS: usize = 4;
const CALLS: usize = 25;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("--worker") {
        let redis = args.next().ok_or("--worker REDIS_URL DB_ADDR")?;
        let db = args.next().ok_or("--worker REDIS_URL DB_ADDR")?;
        return worker(&redis, &db);
    }

    let (_server, redis) = match std::env::var("REDIS_URL") {
        Ok(url) => (None, url),
        Err(_) => {
            let (server, url) = start_redis()?;
            (Some(server), url)
        }
    };

    // The fake database: counts open connections; a client says "Q" and waits for the
    // reply before it closes, so the count is down before its lease is released.
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let db = listener.local_addr()?.to_string();
    let open = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    {
        let (open, peak) = (Arc::clone(&open), Arc::clone(&peak));
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (open, peak) = (Arc::clone(&open), Arc::clone(&peak));
                thread::spawn(move || {
                    let now = open.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    let mut line = String::new();
                    let mut reader = BufReader::new(&stream);
                    let _ = reader.read_line(&mut line);
                    open.fetch_sub(1, Ordering::SeqCst);
                    let _ = (&stream).write_all(b"ok\n");
                });
            }
        });
    }

    let started = Instant::now();
    let exe = std::env::current_exe()?;
    let children: Vec<Child> = (0..PROCESSES)
        .map(|_| Command::new(&exe).args(["--worker", &redis, &db]).spawn())
        .collect::<Result<_, _>>()?;
    for mut child in children {
        if !child.wait()?.success() {
            return Err("a worker process failed".into());
        }
    }
    let peak = peak.load(Ordering::SeqCst);
    println!(
        "{} calls from {PROCESSES} processes x {THREADS} threads in {:?}: peak {peak} \
         connections at the database, budget {BUDGET}",
        PROCESSES * THREADS * CALLS,
        started.elapsed()
    );
    assert!(peak <= BUDGET);
    Ok(())
}

/// One process of the fleet: a local pool of `THREADS` workers whose calls each take a
/// lease of the fleet's budget (`PoolConfig::global_limit`), and `THREADS` callers making
/// `CALLS` calls each.
fn worker(redis: &str, db: &str) -> Result<(), Box<dyn std::error::Error>> {
    let budget = Arc::new(RedisSemaphore::new(
        "fake-db",
        RedisSemaphoreConfig::new(redis, BUDGET)
            .lease(Duration::from_secs(5))
            .max_wait(Duration::from_secs(30)),
    )?);
    let pool = Arc::new(ThreadPoolBulkhead::new(
        "fake-db",
        PoolConfig::new(THREADS).global_limit(budget),
    )?);
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let pool = Arc::clone(&pool);
            let db = db.to_owned();
            thread::spawn(move || -> Result<(), String> {
                for _ in 0..CALLS {
                    let db = db.clone();
                    // The lease is taken on the pool's worker before this runs, and given
                    // back when it returns.
                    pool.execute(move || -> Result<(), String> {
                        let mut conn = TcpStream::connect(&db).map_err(|e| e.to_string())?;
                        thread::sleep(Duration::from_millis(5)); // the query
                        conn.write_all(b"Q\n").map_err(|e| e.to_string())?;
                        let mut reply = String::new();
                        BufReader::new(&conn)
                            .read_line(&mut reply)
                            .map_err(|e| e.to_string())?;
                        Ok(())
                    })
                    .map_err(|e| e.to_string())??;
                }
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| "a worker thread panicked")??;
    }
    Ok(())
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `redis-server` on a free loopback port, answering PING, killed on drop.
fn start_redis() -> Result<(KillOnDrop, String), Box<dyn std::error::Error>> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("redis-server: {e} (install it, or set REDIS_URL)"))?;
    let child = KillOnDrop(child);
    let url = format!("redis://127.0.0.1:{port}/");
    let client = redis::Client::open(url.as_str())?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let ping = client
            .get_connection_with_timeout(Duration::from_millis(200))
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
        if ping.is_ok() {
            return Ok((child, url));
        }
        thread::sleep(Duration::from_millis(10));
    }
    Err("redis-server did not answer PING within 10 s".into())
}
