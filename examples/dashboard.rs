//! The Hystrix dashboard for a terminal: one row per bulkhead, refreshed every second while
//! a mixed load runs, so the sick compartment stands out at a glance.
//!
//! `cargo run --release --example dashboard` — about 6 seconds; `-- --help` for flags.
//!
//! Six caller threads serve "orders": each reads the cache (a semaphore), checks stock
//! (inventory), fetches recommendations with a 50 ms deadline, charges the card (payment),
//! and every tenth order queues a confirmation e-mail without waiting for it. Each order
//! also calls its tenant's compartment (a keyed semaphore: one call per tenant at a time,
//! 4 over all); half the orders come from one noisy tenant with heavy queries, whose excess
//! is refused at its own compartment — the row names it — while the 19 others pass. The
//! work is
//! in-process sleeps standing in for I/O; nothing leaves the machine. A third of the way
//! through, recommendations degrades: its calls take 400 ms instead of 2 ms. Its row fills
//! its bar, its queue and its rejection rate, while the other rows keep flowing — until its
//! circuit breaker opens: then its calls stop taking threads at all, and the row's health
//! shows the breaker's state (open, then half-open while it probes).
//!
//! Each row shows the utilization (running / max) as a bar, the queue (or, for a
//! semaphore, the callers waiting), the calls that completed and that were rejected per
//! second since the last refresh, and the p99 of the run time (pools) or of the permit wait
//! (semaphores): over the last refresh interval, from an event listener, and since the
//! start, from the bulkhead's own histogram. On a terminal the table is redrawn in place;
//! otherwise (piped, in CI) successive frames are printed one after another.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bulkheads::{
    BulkheadManager, BulkheadStats, CircuitBreakerConfig, CircuitState, EventKind, KeyedConfig,
    ManagerStats, Policy, PoolConfig, SemaphoreConfig, SlidingWindow,
};

/// Recommendations go through a policy: its pool, its breaker, a 50 ms deadline.
type Recommendations = Policy<(), std::convert::Infallible>;

const HELP: &str = "\
dashboard: a live terminal table of bulkheads under a mixed load; one pool degrades mid-run.

USAGE:
    cargo run --release --example dashboard -- [OPTIONS]

OPTIONS:
    --seconds N     how long the load runs, 1..=3600 (default 6); the table refreshes
                    every second and recommendations degrades a third of the way in
    -h, --help      print this help
";

/// Caller threads: enough to keep every pool busy, few enough for a laptop.
const CALLERS: u64 = 6;
/// The width of the utilization bar, in cells.
const BAR: usize = 10;
/// The one semaphore: its row reports permit waits where pools report run times.
const CACHE: &str = "cache";
/// The keyed semaphore: a compartment per tenant, and a limit over all of them.
const TENANTS: &str = "tenants";
const TENANTS_GLOBAL: usize = 4;

fn parse_args() -> Result<Option<Duration>, Box<dyn std::error::Error>> {
    use lexopt::prelude::*;
    let mut seconds = 6;
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("seconds") => {
                seconds = parser.value()?.parse()?;
                if !(1..=3600).contains(&seconds) {
                    return Err(format!("--seconds must be 1..=3600, got {seconds}").into());
                }
            }
            Short('h') | Long("help") => return Ok(None),
            _ => return Err(arg.unexpected().into()),
        }
    }
    Ok(Some(Duration::from_secs(seconds)))
}

fn main() -> ExitCode {
    match parse_args() {
        Ok(Some(run_for)) => match run(run_for) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("dashboard: {err}");
                ExitCode::FAILURE
            }
        },
        Ok(None) => {
            print!("{HELP}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("dashboard: {err}\n\n{HELP}");
            ExitCode::from(2)
        }
    }
}

fn run(run_for: Duration) -> Result<(), Box<dyn std::error::Error>> {
    let manager = Arc::new(
        BulkheadManager::builder()
            .semaphore(
                CACHE,
                SemaphoreConfig::new(2).max_wait(Duration::from_millis(5)),
            )
            .keyed(
                TENANTS,
                KeyedConfig::new(SemaphoreConfig::new(1).max_wait(Duration::from_millis(1)))
                    .global_limit(TENANTS_GLOBAL),
            )
            .pool("inventory", PoolConfig::new(8).queue_capacity(8))
            .pool("payment", PoolConfig::new(8).queue_capacity(8))
            .pool("recommendations", PoolConfig::new(4).queue_capacity(4))
            .pool("email", PoolConfig::new(2).queue_capacity(16))
            // Opens once half of the last 20 calls failed (timed out), probes after 2 s.
            .circuit_breaker(
                "recommendations",
                CircuitBreakerConfig::new()
                    .sliding_window(SlidingWindow::Count(20))
                    .minimum_calls(10)
                    .wait_in_open(Duration::from_secs(2))
                    .half_open_calls(3),
            )
            .build()?,
    );
    let recommendations: Arc<Recommendations> = Arc::new(
        Policy::builder("recommendations")
            .pool(manager.pool("recommendations"))
            .circuit_breaker(
                manager
                    .circuit_breaker("recommendations")
                    .ok_or("the breaker is configured above")?,
            )
            .timeout(Duration::from_millis(50))
            .build()?,
    );
    let window = Arc::new(Window::default());
    let sink = Arc::clone(&window);
    manager.on_event(move |e| sink.record(e.bulkhead, e.kind));

    let started = Instant::now();
    let degrade_at = run_for / 3;
    let degraded = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..CALLERS)
        .map(|seed| {
            let manager = Arc::clone(&manager);
            let recommendations = Arc::clone(&recommendations);
            let degraded = Arc::clone(&degraded);
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                serve_orders(&manager, &recommendations, &degraded, &stop, seed);
            })
        })
        .collect();

    let terminal = std::io::stdout().is_terminal();
    let mut screen = Screen::new(terminal);
    let mut last = manager.stats();
    let frames = run_for.as_secs();
    for frame in 1..=frames {
        let tick = started + Duration::from_secs(frame);
        while let Some(left) = tick.checked_duration_since(Instant::now()) {
            if !degraded.load(Ordering::Relaxed) && started.elapsed() >= degrade_at {
                degraded.store(true, Ordering::Relaxed);
            }
            thread::sleep(left.min(Duration::from_millis(50)));
        }
        let now = manager.stats();
        let recent = window.take();
        let header = format!(
            "bulkheads dashboard   t = {:.1} s of {} s   refresh 1 s   recommendations {} at {:.1} s",
            started.elapsed().as_secs_f64(),
            frames,
            if degraded.load(Ordering::Relaxed) {
                "degraded"
            } else {
                "degrades"
            },
            degrade_at.as_secs_f64(),
        );
        screen.draw(&header, &table(&last, &now, &recent, terminal))?;
        last = now;
    }

    stop.store(true, Ordering::Relaxed);
    for caller in callers {
        caller.join().map_err(|_| "a caller thread panicked")?;
    }
    // Recommendations' slow tasks still hold their threads for up to 400 ms.
    let clean = manager.shutdown(Duration::from_secs(5));
    println!("\nfinal stats:\n{}", manager.stats());
    if !clean {
        return Err("the pools did not terminate within 5 s".into());
    }
    Ok(())
}

/// One caller thread: orders until `stop`, each through four bulkheads.
fn serve_orders(
    manager: &BulkheadManager,
    recommendations: &Recommendations,
    degraded: &AtomicBool,
    stop: &AtomicBool,
    seed: u64,
) {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15 ^ (seed + 1));
    let mut orders = 0_u64;
    while !stop.load(Ordering::Relaxed) {
        orders += 1;
        // Failures are the point of the demo: each is counted by its bulkhead and shown.
        let _ = manager
            .semaphore(CACHE)
            .call(|| thread::sleep(Duration::from_millis(1)));
        // Half the orders are the noisy tenant's; the rest spread over 19 others.
        let pick = rng.next() % 38;
        let (tenant, query_ms) = if pick < 19 {
            ("tenant-0".to_owned(), 4)
        } else {
            (format!("tenant-{}", pick - 18), 1)
        };
        if let Some(tenants) = manager.keyed(TENANTS) {
            let _ = tenants.call(&tenant, || thread::sleep(Duration::from_millis(query_ms)));
        }
        let stock_ms = 1 + rng.next() % 3;
        let _ = manager.execute("inventory", move || {
            thread::sleep(Duration::from_millis(stock_ms));
        });
        let slow = degraded.load(Ordering::Relaxed);
        // Through its breaker: once open, a call is refused without taking a thread.
        let _ = recommendations.call(move || {
            thread::sleep(Duration::from_millis(if slow { 400 } else { 2 }));
            Ok(())
        });
        let _ = manager
            .pool("payment")
            .execute_timeout(Duration::from_millis(200), || {
                thread::sleep(Duration::from_millis(3));
            });
        if orders % 10 == 0 {
            // Fire and forget: the handle is dropped, the e-mail still goes (or is rejected).
            let _ = manager
                .pool("email")
                .submit(|| thread::sleep(Duration::from_millis(20)));
        }
    }
}

/// A tiny xorshift generator: jitter for the sleeps, without a dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The latencies of the last refresh interval, per bulkhead, fed by a manager listener:
/// run times of pool tasks, permit waits of semaphore calls. The bulkheads' own histograms
/// cover the whole run, where a degradation a minute old is still a rounding error.
#[derive(Default)]
struct Window {
    samples: Mutex<HashMap<String, Vec<Duration>>>,
}

impl Window {
    fn record(&self, bulkhead: &str, kind: EventKind) {
        let sample = match kind {
            EventKind::Finished { run_time } | EventKind::Panicked { run_time } => run_time,
            // A pool's permits never wait (its Permitted is always zero); a semaphore's
            // Permitted carries the wait this row reports.
            EventKind::Permitted { waited } if bulkhead == CACHE => waited,
            _ => return,
        };
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        match samples.get_mut(bulkhead) {
            Some(v) => v.push(sample),
            None => {
                samples.insert(bulkhead.to_owned(), vec![sample]);
            }
        }
    }

    /// The samples since the last call, sorted, per bulkhead.
    fn take(&self) -> HashMap<String, Vec<Duration>> {
        let mut taken =
            std::mem::take(&mut *self.samples.lock().unwrap_or_else(|e| e.into_inner()));
        for v in taken.values_mut() {
            v.sort_unstable();
        }
        taken
    }
}

fn p99(sorted: &[Duration]) -> Option<Duration> {
    // The nearest-rank p99: the smallest sample with at least 99% of samples at or below it.
    let rank = (sorted.len() * 99).div_ceil(100);
    sorted.get(rank.checked_sub(1)?).copied()
}

fn fmt_duration(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1_000.0 {
        format!("{us:.0} µs")
    } else if us < 1_000_000.0 {
        format!("{:.1} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

fn bar(running: usize, max: usize) -> String {
    let max = max.max(1);
    // Rounded to the nearest cell, but never empty while anything runs.
    let filled = ((running * BAR + max / 2) / max)
        .max(usize::from(running > 0))
        .min(BAR);
    format!("[{}{}]", "#".repeat(filled), ".".repeat(BAR - filled))
}

/// How a row is doing, worst first.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Health {
    /// Its circuit breaker is not closed: calls are refused (or only probes go through).
    Circuit(CircuitState),
    Rejecting,
    Saturated,
    Ok,
}

impl Health {
    fn label(self) -> &'static str {
        match self {
            Self::Circuit(CircuitState::HalfOpen) => "CIRCUIT HALF-OPEN",
            Self::Circuit(_) => "CIRCUIT OPEN",
            Self::Rejecting => "REJECTING",
            Self::Saturated => "saturated",
            Self::Ok => "ok",
        }
    }

    fn color(self) -> &'static str {
        match self {
            Self::Circuit(_) => "\x1b[1;35m",
            Self::Rejecting => "\x1b[1;31m",
            Self::Saturated => "\x1b[33m",
            Self::Ok => "\x1b[32m",
        }
    }
}

const HEADERS: [&str; 9] = [
    "bulkhead",
    "kind",
    "utilization",
    "queue",
    "ok/s",
    "rejected/s",
    "p99 last 1 s",
    "p99 overall",
    "health",
];

/// The rows of one frame: rates are the deltas between two snapshots taken about a second
/// apart.
fn table(
    last: &ManagerStats,
    now: &ManagerStats,
    recent: &HashMap<String, Vec<Duration>>,
    color: bool,
) -> Vec<String> {
    let mut rows: Vec<([String; 9], Health)> = Vec::new();
    for stats in &now.bulkheads {
        let name = stats.name();
        let recent_p99 = recent
            .get(name)
            .and_then(|v| p99(v))
            .map_or_else(|| "-".to_owned(), fmt_duration);
        let (kind, running, max, queue, ok, rejected, overall) = match stats {
            BulkheadStats::Pool(p) => {
                let before = last.pool(name);
                (
                    "pool",
                    p.running,
                    // What is in force: an adaptive pool's limit, else max_threads.
                    p.limit,
                    format!("{}/{}", p.queued, p.queue_capacity),
                    p.completed - before.map_or(0, |b| b.completed),
                    p.rejected - before.map_or(0, |b| b.rejected),
                    p.run_time.p99,
                )
            }
            BulkheadStats::Semaphore(s) => {
                let before = last.semaphore(name);
                (
                    "semaphore",
                    s.running,
                    s.limit,
                    format!("{} waiting", s.waiting),
                    s.permitted - before.map_or(0, |b| b.permitted),
                    s.rejected - before.map_or(0, |b| b.rejected),
                    s.wait.p99,
                )
            }
            BulkheadStats::Process(p) => {
                let before = last.process(name);
                (
                    "process",
                    p.running,
                    p.max_concurrent,
                    format!("{}/{}", p.queued, p.queue_capacity),
                    p.completed - before.map_or(0, |b| b.completed),
                    p.rejected - before.map_or(0, |b| b.rejected),
                    p.run_time.p99,
                )
            }
            _ => continue,
        };
        let circuit = now
            .circuit_breakers
            .iter()
            .find(|b| b.name == name)
            .map(|b| b.state)
            .filter(|&state| state != CircuitState::Closed);
        let health = if let Some(state) = circuit {
            Health::Circuit(state)
        } else if rejected > 0 {
            Health::Rejecting
        } else if running >= max {
            Health::Saturated
        } else {
            Health::Ok
        };
        let row = [
            name.to_owned(),
            kind.to_owned(),
            format!("{} {running:>2}/{max:<2}", bar(running, max)),
            queue,
            ok.to_string(),
            rejected.to_string(),
            recent_p99,
            fmt_duration(overall),
            health.label().to_owned(),
        ];
        rows.push((row, health));
    }

    // Keyed semaphores: one aggregate row each, with the key refused most (cardinality
    // stays one row however many tenants there are).
    for k in &now.keyed {
        let before = last.keyed.iter().find(|b| b.name == k.name);
        let rejected = k.rejected - before.map_or(0, |b| b.rejected);
        let health = if rejected > 0 {
            Health::Rejecting
        } else {
            Health::Ok
        };
        let label = match (health, k.top_rejected.first()) {
            (Health::Rejecting, Some((key, _))) => format!("{} (most: {key})", health.label()),
            _ => health.label().to_owned(),
        };
        let row = [
            k.name.clone(),
            "keyed".to_owned(),
            format!(
                "{} {:>2}/{:<2}",
                bar(k.running, TENANTS_GLOBAL),
                k.running,
                TENANTS_GLOBAL
            ),
            format!("{} keys", k.keys),
            (k.permitted - before.map_or(0, |b| b.permitted)).to_string(),
            rejected.to_string(),
            "-".to_owned(),
            "-".to_owned(),
            label,
        ];
        rows.push((row, health));
    }

    let mut widths = HEADERS.map(|h| h.chars().count());
    for (row, _) in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String; 9], health: Option<Health>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            // Pad first, then colour, so escape codes do not upset the alignment.
            let padded = match i {
                0..=2 => format!("{cell:<w$}"),
                8 => cell.clone(),
                _ => format!("{cell:>w$}"),
            };
            if i > 0 {
                out.push_str("  ");
            }
            match health {
                Some(h) if color && (i == 2 || i == 8) => {
                    out.push_str(&format!("{}{padded}\x1b[0m", h.color()));
                }
                _ => out.push_str(&padded),
            }
        }
        out.trim_end().to_owned()
    };
    let mut lines = vec![line(&HEADERS.map(str::to_owned), None)];
    lines.extend(rows.iter().map(|(row, health)| line(row, Some(*health))));
    lines
}

/// Where frames go: redrawn in place on a terminal, appended otherwise.
struct Screen {
    terminal: bool,
    first: bool,
}

impl Screen {
    fn new(terminal: bool) -> Self {
        Self {
            terminal,
            first: true,
        }
    }

    fn draw(&mut self, header: &str, table: &[String]) -> std::io::Result<()> {
        let mut frame = String::new();
        if self.terminal {
            // Clear once, then only move the cursor home and overwrite: no flicker. Each
            // line clears its own tail, and the frame clears whatever is below it.
            frame.push_str(if self.first {
                "\x1b[2J\x1b[H"
            } else {
                "\x1b[H"
            });
            for line in [header, ""]
                .into_iter()
                .chain(table.iter().map(String::as_str))
            {
                frame.push_str(&format!("{line}\x1b[K\n"));
            }
            frame.push_str("\x1b[J");
        } else {
            if !self.first {
                frame.push('\n');
            }
            frame.push_str(header);
            frame.push_str("\n\n");
            for line in table {
                frame.push_str(line);
                frame.push('\n');
            }
        }
        self.first = false;
        let mut out = std::io::stdout().lock();
        out.write_all(frame.as_bytes())?;
        out.flush()
    }
}
