//! `ConnectionPoolBulkhead` on a real PostgreSQL server through the blocking `postgres`
//! crate: each test starts a throwaway cluster of its own (`common/pg.rs`) on a free
//! loopback port, and drops it at the end, also when the test fails.
//!
//! Without PostgreSQL installed the tests print a skip message and return; with
//! `BULKHEADS_REQUIRE_POSTGRES` set (CI sets it) they fail instead, so CI never passes them
//! silently.

#[path = "common/pg.rs"]
mod pg;

use std::sync::mpsc;
use std::time::Duration;

use bulkheads::{ConnectionPoolBulkhead, Deadline, PoolConfig};
use pg::{Cluster, Layout, Pg};
use postgres::NoTls;
use postgres::error::SqlState;

/// The session's `statement_timeout` in ms, as the server holds it (0 = none).
fn statement_timeout(client: &mut impl postgres::GenericClient) -> i64 {
    let row = client
        .query_one(
            "SELECT setting::bigint FROM pg_settings WHERE name = 'statement_timeout'",
            &[],
        )
        .unwrap();
    row.get(0)
}

fn one_connection(cluster: &Cluster, queue: usize) -> ConnectionPoolBulkhead<Pg> {
    let config = cluster.config();
    ConnectionPoolBulkhead::new("db", PoolConfig::new(1).queue_capacity(queue), move || {
        pg::connect(&config)
    })
    .unwrap()
}

/// The scenario: checkout at 200/s while a burst of 20 two-second reports arrives.
/// With a bulkhead per workload the reports wait in their own queue and checkout does not
/// notice; with one shared pool of the same 12 threads the reports take every thread for
/// two seconds and checkout misses its deadline. The bounds are counts with wide margins
/// (the shared run times out roughly 300 calls, the isolated one none), not latency ratios.
#[test]
fn a_bulkhead_per_workload_keeps_checkout_alive_through_a_report_burst() {
    let Some(cluster) = Cluster::start_or_skip() else {
        return;
    };
    let config = cluster.config();
    pg::prepare(&config).unwrap();
    let isolated = pg::run(&config, Layout::Bulkheads);
    let shared = pg::run(&config, Layout::Shared);
    eprintln!("{}", pg::table(&[isolated.clone(), shared.clone()]));

    for o in [&isolated, &shared] {
        assert_eq!(o.errors, 0, "{:?}: {:?}", o.layout, o.first_error);
        assert_eq!(
            o.reports_done,
            pg::REPORTS,
            "{:?}: every report ends",
            o.layout
        );
        assert_eq!(o.offered, o.ok + o.timeouts + o.rejected, "{o:?}");
    }
    let failed = |o: &pg::Outcome| o.timeouts + o.rejected;
    // The first 12 reports hold all 12 shared threads for two seconds: the checkouts due in
    // the first 1.5 s of that, about 300, cannot finish in time. A third is still a sunk
    // compartment.
    assert!(
        failed(&shared) >= 100,
        "the shared pool should starve checkout: {shared:?}"
    );
    // Isolated, checkout keeps its own 4 connections; a loaded machine may miss a few.
    assert!(
        failed(&isolated) * 10 <= failed(&shared),
        "isolated {isolated:?} vs shared {shared:?}"
    );
    assert!(
        failed(&isolated) * 20 <= isolated.offered,
        "at most 5% of isolated checkouts fail: {isolated:?}"
    );
    assert!(isolated.p99 < pg::CHECKOUT_DEADLINE, "{isolated:?}");
}

/// `SET LOCAL statement_timeout` from `Deadline::current()`: the server cancels a query that
/// would outlive the caller's deadline (SQLSTATE 57014), and the setting ends with the
/// transaction, so the next task on the same connection has none.
#[test]
fn statement_timeout_follows_the_deadline() {
    let Some(cluster) = Cluster::start_or_skip() else {
        return;
    };
    // A queue of one: the follow-up call waits for the worker if the first task is still
    // handing its connection back.
    let db = one_connection(&cluster, 1);
    let (tx, rx) = mpsc::channel();
    // The caller gives up at the same instant the server cancels, so whichever comes first
    // decides what `execute_timeout` returns; the task reports what the server did.
    let _ = db.execute_timeout(Duration::from_millis(300), move |client: &mut Pg| {
        let mut t = pg::transaction_with_deadline(client).unwrap();
        let limit = statement_timeout(&mut t);
        let slow = t.batch_execute("SELECT pg_sleep(10)");
        let code = slow.err().and_then(|e| e.code().cloned());
        tx.send((limit, code)).unwrap();
    });
    let (limit, code) = rx
        .recv_timeout(Duration::from_secs(9))
        .expect("the server ended the 10 s query early");
    assert!((1..=300).contains(&limit), "statement_timeout {limit} ms");
    assert_eq!(code, Some(SqlState::QUERY_CANCELED));

    // The same worker and connection, a plain transaction: the earlier `SET LOCAL` ended
    // with its transaction, so no timeout is left behind for the next task.
    let after = db
        .execute_timeout(Duration::from_secs(10), |client: &mut Pg| {
            let mut t = client.transaction().unwrap();
            statement_timeout(&mut t)
        })
        .unwrap();
    assert_eq!(after, 0);
}

/// An expired deadline must not turn into `statement_timeout = 0`, which PostgreSQL reads
/// as "no timeout": it becomes the shortest one, and the statement is cancelled at once.
#[test]
fn an_expired_deadline_is_the_shortest_timeout_not_none() {
    let Some(cluster) = Cluster::start_or_skip() else {
        return;
    };
    let db = one_connection(&cluster, 0);
    db.execute(|client: &mut Pg| client.simple_query("SELECT 1").map(drop))
        .unwrap()
        .unwrap(); // the worker and its connection are up
    let (tx, rx) = mpsc::channel();
    // A task whose caller gives up while it runs: it waits (bounded) until its deadline has
    // passed, then opens its transaction. A task the worker did not pick up within the 200
    // ms is cancelled unrun (a loaded machine); then it is tried again.
    let mut outcome = None;
    for _ in 0..5 {
        let tx = tx.clone();
        let _ = db.execute_timeout(Duration::from_millis(200), move |client: &mut Pg| {
            let deadline = Deadline::current().unwrap();
            for _ in 0..1_000 {
                if deadline.is_expired() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            assert!(deadline.is_expired());
            let limit = pg::statement_timeout_ms(deadline);
            // Even `SET LOCAL` itself may be cancelled by then: either way, the server
            // stops the work at once.
            let code = pg::transaction_with_deadline(client)
                .and_then(|mut t| t.batch_execute("SELECT pg_sleep(10)"))
                .err()
                .and_then(|e| e.code().cloned());
            let _ = tx.send((limit, code));
        });
        if let Ok(got) = rx.recv_timeout(Duration::from_secs(9)) {
            outcome = Some(got);
            break;
        }
    }
    let (limit, code) = outcome.expect("the task ran and the server ended its query early");
    assert_eq!(limit, 1);
    assert_eq!(code, Some(SqlState::QUERY_CANCELED));
}

/// Threads are connections, on the server's side too: N started workers hold N backends, and
/// after `shutdown` + `await_termination` none is left.
#[test]
fn each_worker_holds_one_server_connection_until_it_retires() {
    let Some(cluster) = Cluster::start_or_skip() else {
        return;
    };
    let mut config = cluster.config();
    config.application_name("bh-count");
    let db = pg::compartment("count", &config, 3, 0).unwrap();
    pg::warm(&db, 3);
    let mut observer = cluster.config().connect(postgres::NoTls).unwrap();
    let mut backends = || -> i64 {
        observer
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'bh-count'",
                &[],
            )
            .unwrap()
            .get(0)
    };
    assert_eq!(backends(), 3);
    for _ in 0..20 {
        db.execute(|client: &mut Pg| client.simple_query("SELECT 1").map(drop))
            .unwrap()
            .unwrap();
    }
    assert_eq!(backends(), 3, "reused, not reopened");
    db.shutdown();
    assert!(db.await_termination(Duration::from_secs(10)));
    // The server sees each close a moment after the client sends it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while backends() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "connections left open"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Cancel on expiry: the task hands the driver's cancel token to `Deadline::on_expire`, so
/// when its caller gives up, PostgreSQL stops the query (57014, "canceling statement due to
/// user request") and the single worker is free at the deadline — not 30 s later, when the
/// query would have ended. Without the cancel, the second call (5 s) would time out waiting
/// for the worker.
#[test]
fn cancel_on_expiry_frees_the_worker_at_the_deadline() {
    let Some(cluster) = Cluster::start_or_skip() else {
        return;
    };
    // One worker and a queue of one: the next call waits for that worker, up to its timeout.
    let db = one_connection(&cluster, 1);
    db.execute(|client: &mut Pg| client.simple_query("SELECT 1").map(drop))
        .unwrap()
        .unwrap(); // the worker and its connection are up, so the task starts at once
    let (tx, rx) = mpsc::channel();
    let first = db.execute_timeout(Duration::from_millis(200), move |client: &mut Pg| {
        let token = client.cancel_token();
        Deadline::current()
            .expect("called with a timeout")
            .on_expire(move || {
                let _ = token.cancel_query(NoTls);
            });
        let slow = client.batch_execute("SELECT pg_sleep(30)");
        let _ = tx.send(slow.err().and_then(|e| e.code().cloned()));
    });
    assert!(first.unwrap_err().is_timeout());

    let next = db.execute_timeout(Duration::from_secs(5), |client: &mut Pg| {
        client
            .query_one("SELECT 41 + 1", &[])
            .map(|row| row.get::<_, i32>(0))
    });
    assert_eq!(next.unwrap().unwrap(), 42, "the worker is free again");
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(1)).unwrap(),
        Some(SqlState::QUERY_CANCELED)
    );
}
