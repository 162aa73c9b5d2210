//! `RedisSemaphore` against a real `redis-server`, started by each test on a free loopback
//! port (no mock). Several processes are this test binary run again with a filter and an
//! environment variable saying what the child does (`child_process`).
//!
//! Without `redis-server` on `PATH` the server tests print a skip message and return; with
//! `BULKHEADS_REQUIRE_REDIS` set (CI sets it) they fail instead, so CI never passes them
//! silently.
#![cfg(feature = "redis")]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bulkheads::{RedisSemaphore, RedisSemaphoreConfig};
use redis::Commands;

const CHILD_MODE: &str = "BULKHEADS_REDIS_CHILD";
const CHILD_URL: &str = "BULKHEADS_REDIS_CHILD_URL";

/// A `redis-server` of this test's own, killed on drop.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    // Bound and dropped: free unless another process takes it in between (then retried).
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts a server, or returns `None` (after saying so) where `redis-server` is missing.
fn server() -> Option<Server> {
    if Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        if std::env::var_os("BULKHEADS_REQUIRE_REDIS").is_some() {
            panic!("BULKHEADS_REQUIRE_REDIS is set but redis-server is not on PATH");
        }
        eprintln!("SKIPPED: redis-server is not on PATH (set BULKHEADS_REQUIRE_REDIS to fail)");
        return None;
    }
    for _ in 0..5 {
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let mut server = Server {
            child,
            url: format!("redis://127.0.0.1:{port}/"),
        };
        let client = redis::Client::open(server.url.as_str()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = server.child.try_wait() {
                break; // exited: the port was taken after all; try another
            }
            let ping = client
                .get_connection_with_timeout(Duration::from_millis(200))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if ping.is_ok() {
                return Some(server);
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
    panic!("redis-server did not answer PING within 10 s on any of 5 ports");
}

fn semaphore(server: &Server, name: &str, permits: usize, lease: Duration) -> RedisSemaphore {
    RedisSemaphore::new(
        name,
        RedisSemaphoreConfig::new(server.url.as_str(), permits).lease(lease),
    )
    .unwrap()
}

/// Runs this binary's `child_process` test in a child with `mode`.
fn spawn_child(server: &Server, mode: &str) -> (Child, BufReader<ChildStdout>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_process",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_MODE, mode)
        .env(CHILD_URL, &server.url)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    (child, out)
}

/// What follows `prefix` on the first line of `out` that has it (the harness prints
/// `test child_process ... ` before the child's first line).
fn line_after(out: &mut BufReader<ChildStdout>, prefix: &str) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "child ended before {prefix}"
        );
        if let Some(at) = line.find(prefix) {
            return line[at + prefix.len()..].trim_end().to_owned();
        }
    }
}

/// `threads` threads × `rounds` calls through a budget of `permits`, each call inside its
/// lease bumping a witness counter in Redis; returns the highest count seen and the tokens.
fn hammer(url: &str, permits: usize, threads: usize, rounds: usize) -> (i64, Vec<u64>) {
    let sem = Arc::new(
        RedisSemaphore::new(
            "budget",
            RedisSemaphoreConfig::new(url, permits).lease(Duration::from_secs(5)),
        )
        .unwrap(),
    );
    let tokens = Arc::new(Mutex::new(Vec::new()));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let sem = Arc::clone(&sem);
            let tokens = Arc::clone(&tokens);
            let mut witness = redis::Client::open(url).unwrap().get_connection().unwrap();
            thread::spawn(move || {
                let mut max = 0;
                for _ in 0..rounds {
                    let lease = sem.acquire_timeout(Duration::from_secs(30)).unwrap();
                    let now: i64 = witness.incr("witness", 1).unwrap();
                    max = max.max(now);
                    // The call: long enough for the others to pile up behind the budget.
                    thread::sleep(Duration::from_millis(2));
                    let _: i64 = witness.decr("witness", 1).unwrap();
                    tokens.lock().unwrap().push(lease.fence_token());
                }
                max
            })
        })
        .collect();
    let max = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .max()
        .unwrap();
    let tokens = tokens.lock().unwrap().clone();
    (max, tokens)
}

/// Not a test of its own: what a child process does, by `BULKHEADS_REDIS_CHILD`.
#[test]
fn child_process() {
    let (Ok(mode), Ok(url)) = (std::env::var(CHILD_MODE), std::env::var(CHILD_URL)) else {
        return;
    };
    match mode.as_str() {
        "hold" => {
            let sem = RedisSemaphore::new(
                "crash",
                RedisSemaphoreConfig::new(url, 1).lease(Duration::from_millis(500)),
            )
            .unwrap();
            let lease = sem.acquire().unwrap();
            println!("HELD {}", lease.fence_token());
            // Held (and renewed) until the parent kills this process; bounded all the same.
            thread::sleep(Duration::from_secs(60));
        }
        "hammer" => {
            let (max, tokens) = hammer(&url, 3, 4, 15);
            println!("MAX {max}");
            println!("TOKENS {}", tokens.len());
        }
        other => panic!("unknown child mode {other}"),
    }
}

#[test]
fn processes_and_threads_never_exceed_the_budget() {
    let Some(server) = server() else { return };
    let children: Vec<_> = (0..3).map(|_| spawn_child(&server, "hammer")).collect();
    let (max_here, tokens) = hammer(&server.url, 3, 4, 15);
    assert!(
        max_here <= 3,
        "{max_here} calls at once in this process's view"
    );
    assert_eq!(tokens.len(), 60);
    for (mut child, mut out) in children {
        let max: i64 = line_after(&mut out, "MAX ").parse().unwrap();
        assert!(
            max <= 3,
            "a child saw {max} calls at once against a budget of 3"
        );
        assert_eq!(line_after(&mut out, "TOKENS "), "60");
        assert!(child.wait().unwrap().success());
    }
}

#[test]
fn fence_tokens_strictly_increase() {
    let Some(server) = server() else { return };
    let sem = semaphore(&server, "fence", 2, Duration::from_secs(5));
    let mut last = 0;
    for _ in 0..20 {
        let lease = sem.acquire().unwrap();
        assert!(lease.fence_token() > last);
        last = lease.fence_token();
    }
    // Concurrent grants: all distinct, and each newer than every earlier one.
    let (_, mut tokens) = hammer(&server.url, 3, 4, 10);
    let n = tokens.len();
    tokens.sort_unstable();
    tokens.dedup();
    assert_eq!(tokens.len(), n, "a fence token was granted twice");
}

#[test]
fn a_killed_holder_frees_its_permit_within_the_lease() {
    let Some(server) = server() else { return };
    let lease_time = Duration::from_millis(500);
    let sem = semaphore(&server, "crash", 1, lease_time);
    let (mut child, mut out) = spawn_child(&server, "hold");
    let token: u64 = line_after(&mut out, "HELD ").parse().unwrap();
    assert!(
        sem.acquire_timeout(Duration::ZERO)
            .unwrap_err()
            .is_rejected(),
        "the child holds the only permit"
    );
    // Renewal keeps the child's lease past its lease time while it lives.
    let past_lease = Instant::now() + lease_time * 2;
    while Instant::now() < past_lease {
        assert!(sem.acquire_timeout(Duration::from_millis(50)).is_err());
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let killed = Instant::now();
    let lease = sem.acquire_timeout(Duration::from_secs(5)).unwrap();
    let waited = killed.elapsed();
    assert!(
        waited <= lease_time + Duration::from_secs(1),
        "the permit came back after {waited:?}, lease {lease_time:?}"
    );
    assert!(lease.fence_token() > token);
}

#[test]
fn renewal_keeps_a_long_calls_lease() {
    let Some(server) = server() else { return };
    let lease_time = Duration::from_millis(300);
    let sem = semaphore(&server, "long", 1, lease_time);
    let lease = sem.acquire().unwrap();
    let end = Instant::now() + lease_time * 4;
    while Instant::now() < end {
        assert!(lease.is_valid());
        thread::sleep(Duration::from_millis(20));
    }
    assert!(lease.is_valid());
    assert!(
        sem.acquire_timeout(Duration::ZERO)
            .unwrap_err()
            .is_rejected()
    );
    assert_eq!(sem.held_fleet_wide().unwrap(), 1);
    drop(lease);
    assert_eq!(sem.held_fleet_wide().unwrap(), 0);
}

#[test]
fn a_lease_whose_renewal_fails_is_reported_lost() {
    let Some(server) = server() else { return };
    let lease_time = Duration::from_millis(300);
    let sem = semaphore(&server, "lost", 1, lease_time);
    let lease = sem.acquire().unwrap();
    assert!(lease.is_valid());
    drop(server); // Redis gone: no renewal can succeed
    let deadline = Instant::now() + Duration::from_secs(5);
    while lease.is_valid() {
        assert!(
            Instant::now() < deadline,
            "lease still valid with Redis gone"
        );
        thread::sleep(Duration::from_millis(10));
    }
    // `is_valid` turns false once the lease's time is up, which can come a moment before
    // the renewal thread (still waiting on its connect timeout) counts it lost: wait for
    // the count too (once seen failing here without this wait).
    while sem.stats().leases_lost == 0 {
        assert!(
            Instant::now() < deadline,
            "the lost lease was never counted"
        );
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(sem.stats().leases_lost, 1);
    drop(lease); // the release fails quietly
}

#[test]
fn released_on_drop_while_unwinding() {
    let Some(server) = server() else { return };
    let sem = semaphore(&server, "unwind", 1, Duration::from_secs(5));
    let result = catch_unwind(AssertUnwindSafe(|| {
        let _lease = sem.acquire().unwrap();
        panic!("the call failed");
    }));
    assert!(result.is_err());
    let lease = sem.acquire_timeout(Duration::ZERO).unwrap();
    assert!(lease.is_valid());
}

#[test]
fn waiting_gets_a_permit_released_elsewhere() {
    let Some(server) = server() else { return };
    let sem = Arc::new(semaphore(&server, "wait", 1, Duration::from_secs(5)));
    let lease = sem.acquire().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = {
        let sem = Arc::clone(&sem);
        thread::spawn(move || {
            tx.send(()).unwrap();
            sem.acquire_timeout(Duration::from_secs(10))
                .map(|l| l.fence_token())
        })
    };
    rx.recv().unwrap();
    let token = lease.fence_token();
    drop(lease);
    assert!(waiter.join().unwrap().unwrap() > token);
}

#[test]
fn redis_down_fails_closed_within_the_connect_timeout() {
    // Nothing listens on a port just freed: connection refused.
    let url = format!("redis://127.0.0.1:{}/", free_port());
    let timeout = Duration::from_millis(300);
    let sem = RedisSemaphore::new(
        "down",
        RedisSemaphoreConfig::new(url, 5)
            .connect_timeout(timeout)
            .max_wait(Duration::from_secs(10)),
    )
    .unwrap();
    let start = Instant::now();
    let err = sem.acquire().unwrap_err();
    assert!(start.elapsed() <= timeout + Duration::from_millis(200));
    assert!(err.is_unavailable(), "{err}");
    assert_eq!(sem.stats().unavailable, 1);
    assert_eq!(err.bulkhead(), "down");
    assert!(err.to_string().contains("'down'"), "{err}");
}

#[test]
fn an_unanswering_server_fails_closed_within_the_connect_timeout() {
    // A listener that accepts (the kernel does) but never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}/", listener.local_addr().unwrap());
    let timeout = Duration::from_millis(300);
    let sem = RedisSemaphore::new(
        "mute",
        RedisSemaphoreConfig::new(url, 5).connect_timeout(timeout),
    )
    .unwrap();
    let start = Instant::now();
    let err = sem.acquire().unwrap_err();
    // Connect, then one command's reply: each bounded by the timeout.
    assert!(start.elapsed() <= timeout * 2 + Duration::from_millis(300));
    assert!(err.is_unavailable(), "{err}");
    drop(listener);
}

#[test]
fn a_malformed_url_is_a_config_error() {
    for url in ["", "localhost:6379", "http://127.0.0.1/", "redis://[::1"] {
        let err = RedisSemaphore::new("db", RedisSemaphoreConfig::new(url, 5)).unwrap_err();
        assert_eq!((err.bulkhead(), err.field()), ("db", "url"), "{url:?}");
    }
}

// --- PoolConfig::global_limit / SemaphoreConfig::global_limit -------------------------------

fn global(server: &Server, name: &str, permits: usize, max_wait: Duration) -> Arc<RedisSemaphore> {
    Arc::new(
        RedisSemaphore::new(
            name,
            RedisSemaphoreConfig::new(server.url.as_str(), permits)
                .lease(Duration::from_secs(5))
                .max_wait(max_wait),
        )
        .unwrap(),
    )
}

#[test]
fn pools_sharing_a_global_limit_never_run_more_than_the_budget() {
    use bulkheads::{PoolConfig, ThreadPoolBulkhead};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let Some(server) = server() else { return };
    // Two pools of 3 threads each (two "replicas"), one fleet budget of 2.
    let budget = global(&server, "pools-budget", 2, Duration::from_secs(20));
    let pools: Vec<Arc<ThreadPoolBulkhead>> = (0..2)
        .map(|i| {
            Arc::new(
                ThreadPoolBulkhead::new(
                    format!("replica-{i}"),
                    PoolConfig::new(3)
                        .queue_capacity(64)
                        .global_limit(budget.clone()),
                )
                .unwrap(),
            )
        })
        .collect();
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let callers: Vec<_> = (0..6)
        .map(|i| {
            let pool = pools[i % 2].clone();
            let (running, peak) = (running.clone(), peak.clone());
            thread::spawn(move || {
                for _ in 0..5 {
                    let (running, peak) = (running.clone(), peak.clone());
                    pool.execute(move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        thread::sleep(Duration::from_millis(5));
                        running.fetch_sub(1, Ordering::SeqCst);
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    for c in callers {
        c.join().unwrap();
    }
    assert!(peak.load(Ordering::SeqCst) <= 2, "the fleet budget is 2");
    assert_eq!(peak.load(Ordering::SeqCst), 2, "and both permits were used");
    let completed: u64 = pools.iter().map(|p| p.stats().completed).sum();
    assert_eq!(completed, 30);
    assert_eq!(budget.stats().acquired, 30);
    assert_eq!(budget.stats().held, 0, "every lease released");
}

#[test]
fn a_pool_without_a_lease_in_time_rejects_naming_the_pool() {
    use bulkheads::{PoolConfig, ThreadPoolBulkhead};
    let Some(server) = server() else { return };
    let budget = global(&server, "held-budget", 1, Duration::ZERO);
    let held = budget.acquire().unwrap();
    let pool = ThreadPoolBulkhead::new("reports", PoolConfig::new(2).global_limit(budget.clone()))
        .unwrap();
    let err = pool.execute(|| unreachable!("must not run")).unwrap_err();
    assert!(err.is_rejected(), "{err}");
    assert_eq!(err.bulkhead(), "reports");
    let s = pool.stats();
    assert_eq!(
        (s.global_refused, s.completed, s.running),
        (1, 0, 0),
        "{s:?}"
    );
    drop(held);
    assert_eq!(pool.execute(|| 7).unwrap(), 7, "the lease is free again");
    assert_eq!(pool.stats().submitted, 2);
}

#[test]
fn a_lease_wait_never_outlasts_the_tasks_deadline() {
    use bulkheads::{PoolConfig, ThreadPoolBulkhead};
    let Some(server) = server() else { return };
    // The semaphore would wait 30 s for a permit; the task's deadline is 200 ms.
    let budget = global(&server, "deadline-budget", 1, Duration::from_secs(30));
    let held = budget.acquire().unwrap();
    let pool = ThreadPoolBulkhead::new("deadline", PoolConfig::new(1).global_limit(budget.clone()))
        .unwrap();
    let start = Instant::now();
    let err = pool
        .execute_timeout(Duration::from_millis(200), || unreachable!("must not run"))
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    // The worker gave up on the lease at the deadline too (not after 30 s): the pool is
    // free, and the refusal is counted.
    let deadline = Instant::now() + Duration::from_secs(10);
    while pool.stats().global_refused == 0 {
        assert!(
            Instant::now() < deadline,
            "the worker is still waiting for a lease"
        );
        thread::sleep(Duration::from_millis(5));
    }
    assert!(start.elapsed() < Duration::from_secs(10));
    drop(held);
    assert_eq!(pool.execute(|| 1).unwrap(), 1);
}

#[test]
fn redis_down_fails_closed_or_open_as_configured() {
    use bulkheads::{Outage, PoolConfig, SemaphoreBulkhead, SemaphoreConfig, ThreadPoolBulkhead};
    let url = format!("redis://127.0.0.1:{}/", free_port());
    let down = |name: &str, outage: Outage| {
        Arc::new(
            RedisSemaphore::new(
                name,
                RedisSemaphoreConfig::new(url.as_str(), 5)
                    .connect_timeout(Duration::from_millis(200))
                    .on_outage(outage),
            )
            .unwrap(),
        )
    };
    let closed = ThreadPoolBulkhead::new(
        "closed",
        PoolConfig::new(1).global_limit(down("closed-budget", Outage::FailClosed)),
    )
    .unwrap();
    let start = Instant::now();
    let err = closed.execute(|| unreachable!("fail closed")).unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(err.is_unavailable(), "{err}");
    assert_eq!(err.bulkhead(), "closed");
    assert!(err.to_string().contains("closed-budget"), "{err}");
    assert_eq!(closed.stats().global_refused, 1);

    let budget = down("open-budget", Outage::FailOpen);
    let open =
        ThreadPoolBulkhead::new("open", PoolConfig::new(1).global_limit(budget.clone())).unwrap();
    assert_eq!(open.execute(|| "ran").unwrap(), "ran");
    assert_eq!(open.stats().global_refused, 0);
    assert_eq!(budget.stats().ran_without_lease, 1);

    let sem = SemaphoreBulkhead::new(
        "sem-closed",
        SemaphoreConfig::new(2).global_limit(down("sem-budget", Outage::FailClosed)),
    )
    .unwrap();
    let err = sem.call(|| unreachable!("fail closed")).unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert_eq!(err.bulkhead(), "sem-closed");
    assert_eq!(sem.stats().running, 0, "the local permit is given back");
}

#[test]
fn semaphore_calls_take_a_lease_inside_their_permit() {
    use bulkheads::{SemaphoreBulkhead, SemaphoreConfig};
    let Some(server) = server() else { return };
    let budget = global(&server, "sem-lease", 1, Duration::ZERO);
    let sem = SemaphoreBulkhead::new(
        "partner",
        SemaphoreConfig::new(4).global_limit(budget.clone()),
    )
    .unwrap();
    let held_inside = sem.call(|| budget.stats().held).unwrap();
    assert_eq!(held_inside, 1, "the call held the fleet's lease");
    assert_eq!(budget.stats().held, 0, "released after the call");
    let other = budget.acquire().unwrap();
    let err = sem.call(|| unreachable!("budget taken")).unwrap_err();
    assert!(err.is_rejected(), "{err}");
    assert_eq!(err.bulkhead(), "partner");
    drop(other);
}
