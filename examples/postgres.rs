//! A bulkhead per workload on a real PostgreSQL server, against one shared pool of the same
//! threads: checkout queries at 200/s while a burst of 20 slow reports arrives.
//!
//! `cargo run --release --example postgres` — about fifteen seconds. It starts a throwaway
//! cluster of its own (`initdb` + `pg_ctl` into a temporary directory, on a free loopback
//! port; removed at the end) when PostgreSQL's binaries are installed, or uses
//! `DATABASE_URL` (`host=.. user=.. dbname=..` or `postgresql://..`) if set; it creates two
//! tables prefixed `bulkheads_` there.
//!
//! Every compartment is a `ConnectionPoolBulkhead<postgres::Client>`: each worker owns one
//! connection, so threads are connections. The bulkheads layout has checkout (4 threads,
//! queue 4) and reports (8 threads, queue 12); the shared layout one pool of 12 threads and
//! a queue of 16. Each transaction sets `SET LOCAL statement_timeout` from
//! `Deadline::current()`, so the server stops work its caller has given up on. Checkout
//! latency is measured from when each call was due (a late client's wait counts), over the
//! calls that succeeded; a call that missed its 500 ms deadline is a timeout.
//!
//! The scenario is the one `tests/postgres.rs` asserts on (`tests/common/pg.rs`).

#[path = "../tests/common/pg.rs"]
mod pg;

use std::str::FromStr;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Kept alive until the end of `main`: dropping it stops the server.
    let mut cluster = None;
    let config = match std::env::var("DATABASE_URL") {
        Ok(url) => postgres::Config::from_str(&url)?,
        Err(_) => match pg::Cluster::start_or_skip() {
            Some(c) => cluster.insert(c).config(),
            None => {
                eprintln!("install PostgreSQL or set DATABASE_URL to run this example");
                std::process::exit(2);
            }
        },
    };
    pg::prepare(&config)?;
    println!(
        "checkout: {} clients × one call per {:?} ({}/s), deadline {:?}; \
         burst of {} reports (`{}`) at {:?} into a {:?} run",
        pg::CHECKOUT_CLIENTS,
        pg::CHECKOUT_INTERVAL,
        1_000 * pg::CHECKOUT_CLIENTS as u128 / pg::CHECKOUT_INTERVAL.as_millis(),
        pg::CHECKOUT_DEADLINE,
        pg::REPORTS,
        pg::REPORT_SQL,
        pg::BURST_AT,
        pg::RUN,
    );
    println!(
        "bulkheads: checkout {} threads + queue {}, reports {} + {}; shared: {} + {}\n",
        pg::CHECKOUT_THREADS,
        pg::CHECKOUT_QUEUE,
        pg::REPORT_THREADS,
        pg::REPORT_QUEUE,
        pg::CHECKOUT_THREADS + pg::REPORT_THREADS,
        pg::CHECKOUT_QUEUE + pg::REPORT_QUEUE,
    );
    let outcomes = [
        pg::run(&config, pg::Layout::Bulkheads),
        pg::run(&config, pg::Layout::Shared),
    ];
    print!("{}", pg::table(&outcomes));
    println!("(checkout p50/p99/max over the calls that succeeded; reports done of those sent)");
    for o in &outcomes {
        if let Some(e) = &o.first_error {
            println!("{:?}: first error: {e}", o.layout);
        }
    }
    drop(cluster);
    Ok(())
}
