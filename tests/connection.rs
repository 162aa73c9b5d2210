//! `ConnectionPoolBulkhead`: workers own their connections, so threads and connections
//! cannot drift apart (the database issue: two bulkheads of 6 + 8 threads over one shared
//! pool of 8 connections gave 97 timeouts and 166 failures with nothing in either crate's
//! stats pointing at the shared pool).

use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use bulkheads::{ConnectionPoolBulkhead, Deadline, PoolConfig};

mod common;
use common::wait_until;

const LONG: Duration = Duration::from_secs(10);

/// Counts connections opened and closed.
#[derive(Default)]
struct Server {
    opened: AtomicUsize,
    closed: AtomicUsize,
    /// Connects to refuse before accepting again.
    refuse: AtomicUsize,
}

struct Conn {
    id: usize,
    server: Arc<Server>,
    broken: bool,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.server.closed.fetch_add(1, Ordering::SeqCst);
    }
}

fn db(name: &str, config: PoolConfig, server: &Arc<Server>) -> ConnectionPoolBulkhead<Conn> {
    let server = Arc::clone(server);
    ConnectionPoolBulkhead::new(name, config, move || {
        if server
            .refuse
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "too many connections",
            ));
        }
        Ok(Conn {
            id: server.opened.fetch_add(1, Ordering::SeqCst),
            server: Arc::clone(&server),
            broken: false,
        })
    })
    .unwrap()
}

#[test]
fn threads_are_exactly_connections_and_each_is_reused_across_tasks() {
    let server = Arc::new(Server::default());
    let db = Arc::new(db("orders", PoolConfig::new(3).queue_capacity(64), &server));
    // Three tasks at once start three workers, hence three connections.
    let barrier = Arc::new(Barrier::new(3));
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let (db, barrier) = (Arc::clone(&db), Arc::clone(&barrier));
            std::thread::spawn(move || {
                db.execute(move |conn: &mut Conn| {
                    barrier.wait();
                    conn.id
                })
                .unwrap()
            })
        })
        .collect();
    let mut ids: Vec<usize> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    ids.sort_unstable();
    assert_eq!(ids, [0, 1, 2]);
    for _ in 0..200 {
        let id = db.execute(|conn: &mut Conn| conn.id).unwrap();
        assert!(id < 3, "a fourth connection for three threads");
    }
    assert_eq!(
        server.opened.load(Ordering::SeqCst),
        3,
        "connections reused"
    );
    assert_eq!(server.closed.load(Ordering::SeqCst), 0);
    assert_eq!(db.stats().connect_failures, 0);

    db.shutdown();
    assert!(db.await_termination(LONG));
    // Every worker has exited, so every connection is closed: no polling needed.
    assert_eq!(server.closed.load(Ordering::SeqCst), 3);
}

#[test]
fn a_worker_that_retires_closes_its_connection() {
    let server = Arc::new(Server::default());
    let db = db(
        "retiring",
        PoolConfig::new(2)
            .core_threads(0)
            .keep_alive(Duration::from_millis(20)),
        &server,
    );
    db.execute(|_: &mut Conn| ()).unwrap();
    assert_eq!(server.opened.load(Ordering::SeqCst), 1);
    wait_until(LONG, "the idle worker retires and closes", || {
        server.closed.load(Ordering::SeqCst) == 1
    });
    assert_eq!(db.stats().live_threads, 0);
    // The next call starts a worker, which opens a new connection.
    assert_eq!(db.execute(|conn: &mut Conn| conn.id).unwrap(), 1);
}

#[test]
fn a_failed_connect_is_the_calls_error_naming_the_bulkhead_and_the_next_call_retries() {
    let server = Arc::new(Server::default());
    server.refuse.store(1, Ordering::SeqCst);
    let db = db("flaky-db", PoolConfig::new(1), &server);
    let err = db.execute(|conn: &mut Conn| conn.id).unwrap_err();
    assert!(err.is_connect(), "{err}");
    assert_eq!(err.bulkhead(), "flaky-db");
    assert!(err.to_string().contains("too many connections"), "{err}");
    let source = std::error::Error::source(&err).expect("the driver's error");
    let driver = source
        .downcast_ref::<bulkheads::DriverError>()
        .expect("a DriverError")
        .get_ref()
        .downcast_ref::<std::io::Error>()
        .expect("the io::Error");
    assert_eq!(driver.kind(), std::io::ErrorKind::ConnectionRefused);
    assert_eq!(db.stats().connect_failures, 1);
    // Not a panic, and the worker lives: the next call connects.
    assert_eq!(db.stats().panicked, 0);
    assert_eq!(db.execute(|conn: &mut Conn| conn.id).unwrap(), 0);
}

#[test]
fn a_broken_connection_is_replaced_before_reuse() {
    let server = Arc::new(Server::default());
    let db =
        db("checked", PoolConfig::new(1), &server).health_check(|conn: &mut Conn| !conn.broken);
    db.execute(|conn: &mut Conn| conn.broken = true).unwrap();
    let id = db.execute(|conn: &mut Conn| conn.id).unwrap();
    assert_eq!(id, 1, "the broken one was closed and a new one opened");
    assert_eq!(server.closed.load(Ordering::SeqCst), 1);
    assert_eq!(
        db.execute(|conn: &mut Conn| conn.id).unwrap(),
        1,
        "healthy: kept"
    );
}

#[test]
fn a_task_that_panics_gives_its_connection_up_and_the_worker_reconnects() {
    let server = Arc::new(Server::default());
    let db = db("panicky", PoolConfig::new(1), &server);
    assert_eq!(db.execute(|conn: &mut Conn| conn.id).unwrap(), 0);
    let err = db
        .execute(|_: &mut Conn| -> usize { panic!("mid-transaction") })
        .unwrap_err();
    assert!(err.is_panicked(), "{err}");
    // Closed (it may be mid-transaction), not reused.
    assert_eq!(server.closed.load(Ordering::SeqCst), 1);
    assert_eq!(db.execute(|conn: &mut Conn| conn.id).unwrap(), 1);
}

#[test]
fn connections_need_not_be_send_and_tasks_see_their_deadline() {
    let opened = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&opened);
    // An Rc: a client library whose handle must stay on the thread that made it.
    let db = ConnectionPoolBulkhead::new("thread-bound", PoolConfig::new(1), move || {
        counter.fetch_add(1, Ordering::SeqCst);
        Ok::<_, std::io::Error>(Rc::new(7_u32))
    })
    .unwrap();
    let left = db
        .execute_timeout(LONG, |conn: &mut Rc<u32>| {
            assert_eq!(**conn, 7);
            Deadline::current().map(|d| d.remaining())
        })
        .unwrap();
    let left = left.expect("a deadline inside the task");
    assert!(left > Duration::ZERO && left <= LONG, "{left:?}");
    assert_eq!(opened.load(Ordering::SeqCst), 1);
}

/// A driver whose connection closes through a thread-local of its own, touched first when it
/// connects — as the blocking `postgres::Client` closes through its tokio runtime's context.
mod runtime_backed {
    use std::cell::RefCell;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    thread_local! {
        // A value with a destructor (as a runtime context is): registered on first use,
        // so destroyed before the earlier-used connection slot at thread exit.
        static RUNTIME: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
    }

    pub struct Client {
        pub closed: Arc<AtomicUsize>,
    }

    pub fn connect(closed: Arc<AtomicUsize>) -> Client {
        RUNTIME.with(|r| r.borrow_mut().push(1));
        Client { closed }
    }

    impl Drop for Client {
        fn drop(&mut self) {
            // `with`, not `try_with`: like tokio's `Handle::enter`, it panics once the
            // thread-local is gone, and a panic in a thread-local's destructor aborts.
            RUNTIME.with(|r| r.borrow_mut().pop());
            self.closed.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[test]
fn a_connection_that_closes_through_its_own_thread_local_closes_cleanly_on_retire() {
    // Regression: the connection was dropped by its slot's thread-local destructor at thread
    // exit, after the driver's own thread-local (first used later, so destroyed earlier):
    // `ConnectionPoolBulkhead<postgres::Client>` aborted the whole process on `shutdown`
    // (found by tests/postgres.rs). Workers now close their connections as they retire.
    let (opened, closed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (opens, counter) = (opened.clone(), closed.clone());
    let db = ConnectionPoolBulkhead::new("runtime-backed", PoolConfig::new(2), move || {
        opens.fetch_add(1, Ordering::SeqCst);
        Ok::<_, std::io::Error>(runtime_backed::connect(counter.clone()))
    })
    .unwrap();
    // Both workers busy at once, each with its connection.
    let barrier = Arc::new(Barrier::new(2));
    thread::scope(|s| {
        for _ in 0..2 {
            let barrier = barrier.clone();
            let db = &db;
            s.spawn(move || db.execute(move |_conn| barrier.wait()).unwrap());
        }
    });
    assert_eq!(opened.load(Ordering::SeqCst), 2);
    db.shutdown();
    assert!(db.await_termination(Duration::from_secs(10)));
    assert_eq!(
        closed.load(Ordering::SeqCst),
        2,
        "each closed, the process alive"
    );
}

// Held by a manager: one of its pools for stats, events, the text and shutdown.

#[test]
fn a_manager_holds_a_connection_pool_as_one_of_its_pools() {
    use bulkheads::{BulkheadManager, EventKind};
    use std::sync::atomic::AtomicBool;

    static OPEN: AtomicUsize = AtomicUsize::new(0);
    struct Conn;
    impl Drop for Conn {
        fn drop(&mut self) {
            OPEN.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let fail_next = Arc::new(AtomicBool::new(true));
    let fail = Arc::clone(&fail_next);
    let db = Arc::new(
        ConnectionPoolBulkhead::new("mgr-db", PoolConfig::new(2), move || {
            if fail.swap(false, Ordering::SeqCst) {
                return Err(std::io::Error::other("server starting"));
            }
            OPEN.fetch_add(1, Ordering::SeqCst);
            Ok(Conn)
        })
        .unwrap(),
    );
    let manager = BulkheadManager::builder()
        .connection_pool(Arc::clone(&db))
        .build()
        .unwrap();
    let finished = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&finished);
    manager.on_event(move |e| {
        if e.bulkhead == "mgr-db" && matches!(e.kind, EventKind::Finished { .. }) {
            seen.fetch_add(1, Ordering::SeqCst);
        }
    });
    let same = manager
        .connection_pool::<Conn>("mgr-db")
        .expect("registered");
    assert!(Arc::ptr_eq(&same, &db));
    assert!(
        manager.connection_pool::<String>("mgr-db").is_none(),
        "another type"
    );
    assert!(manager.connection_pool::<Conn>("other").is_none());
    assert!(
        same.execute(|_: &mut Conn| ())
            .unwrap_err()
            .to_string()
            .contains("server starting")
    );
    for _ in 0..3 {
        same.execute(|_: &mut Conn| ()).unwrap();
    }
    let stats = manager.stats();
    let row = stats.pool("mgr-db").expect("one of the manager's pools");
    assert_eq!((row.connect_failures, row.completed, row.failed), (1, 3, 1));
    let own = db.stats();
    assert_eq!(
        (row.submitted, row.connect_failures, row.completed),
        (own.submitted, own.connect_failures, own.completed),
        "one set of books"
    );
    assert!(stats.to_prometheus().contains("bulkhead=\"mgr-db\""));
    assert_eq!(
        finished.load(Ordering::SeqCst),
        3,
        "the manager's listener hears it"
    );
    // The manager's pool of that name is its thread pool.
    assert_eq!(manager.pool("mgr-db").stats().completed, 3);
    // Shutdown through the manager closes the connections.
    assert!(OPEN.load(Ordering::SeqCst) >= 1);
    assert!(manager.shutdown(Duration::from_secs(30)));
    assert_eq!(OPEN.load(Ordering::SeqCst), 0, "every connection closed");
    // A name taken twice is an error.
    let err = BulkheadManager::builder()
        .pool("mgr-db", PoolConfig::new(1))
        .connection_pool(db)
        .build()
        .unwrap_err();
    assert_eq!((err.bulkhead(), err.field()), ("mgr-db", "name"));
}
