//! An adaptive bulkhead following a dependency whose capacity drops from 16 concurrent calls
//! to 4 and comes back, beside a fixed pool of the old size.
//!
//! The dependency serves each call in 10 ms and at most `capacity` at once; calls above its
//! capacity queue inside it. Two identical copies of it get the same load (24 callers in a
//! closed loop, 100 ms timeout each), one behind a fixed pool of 16 threads, one behind a
//! pool of 16 made adaptive with `Aimd` over 20-50 ms windows (a window whose 90th
//! percentile is slower than 15 ms counts as a drop). When
//! the capacity falls to 4 the fixed pool keeps 16 calls inside the dependency, 12 of them
//! queueing there; the adaptive pool lowers its limit to what the dependency can take,
//! rejects the excess at once, and its calls keep near the unloaded 10 ms.
//!
//! Prints a table every 250 ms and writes an SVG chart (limit and p99 over time).
//!
//! ```text
//! cargo run --release --example adaptive [-- --svg PATH]
//! ```

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bulkheads::limit::{Aggregate, Aimd, Windowed};
use bulkheads::{PoolConfig, ThreadPoolBulkhead};

/// How long the dependency takes for one call when it is not overloaded.
const SERVICE: Duration = Duration::from_millis(10);
/// The phases: (from, capacity).
const PHASES: [(Duration, usize); 3] = [
    (Duration::ZERO, 16),
    (Duration::from_secs(3), 4),
    (Duration::from_secs(6), 16),
];
const RUN: Duration = Duration::from_secs(9);
const TICK: Duration = Duration::from_millis(250);
const CALLERS: usize = 24;
const THINK: Duration = Duration::from_millis(10);
const TIMEOUT: Duration = Duration::from_millis(100);

/// A dependency that serves at most `capacity` calls at once; the rest wait inside it.
struct Dependency {
    capacity: AtomicUsize,
    busy: Mutex<usize>,
    freed: Condvar,
}

impl Dependency {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            capacity: AtomicUsize::new(PHASES[0].1),
            busy: Mutex::new(0),
            freed: Condvar::new(),
        })
    }

    fn call(&self) {
        let mut busy = self.busy.lock().unwrap();
        while *busy >= self.capacity.load(Ordering::SeqCst) {
            busy = self.freed.wait(busy).unwrap();
        }
        *busy += 1;
        drop(busy);
        thread::sleep(SERVICE);
        *self.busy.lock().unwrap() -= 1;
        self.freed.notify_all();
    }

    fn set_capacity(&self, capacity: usize) {
        self.capacity.store(capacity, Ordering::SeqCst);
        self.freed.notify_all();
    }
}

/// What the callers of one side saw in the current tick.
#[derive(Default)]
struct Tick {
    latencies: Vec<Duration>,
    rejected: u64,
    timed_out: u64,
}

struct Side {
    pool: Arc<ThreadPoolBulkhead>,
    dependency: Arc<Dependency>,
    tick: Arc<Mutex<Tick>>,
}

impl Side {
    fn new(name: &str, config: PoolConfig) -> Result<Self, bulkheads::ConfigError> {
        Ok(Self {
            pool: Arc::new(ThreadPoolBulkhead::new(name, config)?),
            dependency: Dependency::new(),
            tick: Arc::default(),
        })
    }

    fn callers(&self, stop: &Arc<AtomicBool>) -> Vec<thread::JoinHandle<()>> {
        (0..CALLERS)
            .map(|_| {
                let (pool, dependency, tick, stop) = (
                    self.pool.clone(),
                    self.dependency.clone(),
                    self.tick.clone(),
                    stop.clone(),
                );
                thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let dependency = dependency.clone();
                        let start = Instant::now();
                        let outcome = pool.execute_timeout(TIMEOUT, move || dependency.call());
                        let mut tick = tick.lock().unwrap();
                        match outcome {
                            Ok(()) => tick.latencies.push(start.elapsed()),
                            Err(e) if e.is_rejected() => tick.rejected += 1,
                            Err(_) => tick.timed_out += 1,
                        }
                        drop(tick);
                        thread::sleep(THINK);
                    }
                })
            })
            .collect()
    }

    /// The tick's p99, calls served, rejected and timed out; resets it.
    fn take(&self) -> (Option<Duration>, usize, u64, u64) {
        let mut tick = std::mem::take(&mut *self.tick.lock().unwrap());
        tick.latencies.sort_unstable();
        let p99 = (!tick.latencies.is_empty()).then(|| {
            let i = (tick.latencies.len() * 99).div_ceil(100) - 1;
            tick.latencies[i]
        });
        (p99, tick.latencies.len(), tick.rejected, tick.timed_out)
    }
}

struct Row {
    at: Duration,
    capacity: usize,
    limit: usize,
    adaptive_p99: Option<Duration>,
    fixed_p99: Option<Duration>,
}

fn ms(d: Option<Duration>) -> String {
    d.map_or_else(
        || "-".to_owned(),
        |d| format!("{:.1}", d.as_secs_f64() * 1e3),
    )
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut svg_path = "target/adaptive.svg".to_owned();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--svg" => svg_path = args.next().ok_or("--svg needs a path")?,
            other => return Err(format!("unknown argument {other}; try --svg PATH").into()),
        }
    }

    let fixed = Side::new("fixed", PoolConfig::new(16))?;
    let aimd = Aimd::new()
        .initial_limit(16)
        .min_limit(1)
        .max_limit(16)
        .timeout(Duration::from_millis(15));
    // Per window of 20-50 ms (at least 10 calls), the 90th percentile of the calls' times
    // is one sample: slower than 15 ms is a drop (cut by 0.9), else one more.
    let windowed = Windowed::new(aimd)
        .min_window(Duration::from_millis(20))
        .max_window(Duration::from_millis(50))
        .min_samples(10)
        .aggregate(Aggregate::Percentile(0.9));
    let config = PoolConfig::new(16).adaptive(windowed);
    let adaptive = Side::new("adaptive", config)?;

    let stop = Arc::new(AtomicBool::new(false));
    let mut callers = fixed.callers(&stop);
    callers.extend(adaptive.callers(&stop));

    println!(
        "{:>6} {:>8} {:>6} | {:>9} {:>6} {:>6} {:>6} | {:>9} {:>6} {:>6} {:>6}",
        "t (s)",
        "capacity",
        "limit",
        "adapt p99",
        "served",
        "reject",
        "t/o",
        "fixed p99",
        "served",
        "reject",
        "t/o"
    );
    let start = Instant::now();
    let mut rows = Vec::new();
    let mut totals = [[0u64; 3]; 2];
    let mut next = start + TICK;
    while next <= start + RUN {
        thread::sleep(next.saturating_duration_since(Instant::now()));
        let at = next - start;
        let capacity = PHASES
            .iter()
            .rev()
            .find(|(from, _)| at > *from)
            .map_or(PHASES[0].1, |p| p.1);
        let (a_p99, a_ok, a_rej, a_to) = adaptive.take();
        let (f_p99, f_ok, f_rej, f_to) = fixed.take();
        let limit = adaptive.pool.stats().limit;
        for (total, (ok, rej, to)) in totals
            .iter_mut()
            .zip([(a_ok, a_rej, a_to), (f_ok, f_rej, f_to)])
        {
            total[0] += ok as u64;
            total[1] += rej;
            total[2] += to;
        }
        println!(
            "{:>6.2} {:>8} {:>6} | {:>9} {:>6} {:>6} {:>6} | {:>9} {:>6} {:>6} {:>6}",
            at.as_secs_f64(),
            capacity,
            limit,
            ms(a_p99),
            a_ok,
            a_rej,
            a_to,
            ms(f_p99),
            f_ok,
            f_rej,
            f_to
        );
        rows.push(Row {
            at,
            capacity,
            limit,
            adaptive_p99: a_p99,
            fixed_p99: f_p99,
        });
        // The capacity for the next tick.
        let upcoming = PHASES
            .iter()
            .rev()
            .find(|(from, _)| at >= *from)
            .map_or(PHASES[0].1, |p| p.1);
        fixed.dependency.set_capacity(upcoming);
        adaptive.dependency.set_capacity(upcoming);
        next += TICK;
    }
    stop.store(true, Ordering::Relaxed);
    for c in callers {
        c.join().expect("caller");
    }

    // Per phase: the median of the ticks' p99s (the first tick of each phase is the
    // transition, kept out).
    println!("\nper phase (median of the 250 ms ticks' p99, first tick of each phase left out):");
    println!(
        "{:>14} {:>8} {:>12} {:>12} {:>12}",
        "phase", "capacity", "limit (med)", "adaptive p99", "fixed p99"
    );
    for (i, (from, capacity)) in PHASES.iter().enumerate() {
        let until = PHASES.get(i + 1).map_or(RUN, |p| p.0);
        let ticks: Vec<&Row> = rows
            .iter()
            .filter(|r| r.at > *from + TICK && r.at <= until)
            .collect();
        let median = |mut v: Vec<Duration>| {
            v.sort_unstable();
            v.get(v.len() / 2).copied()
        };
        let mut limits: Vec<usize> = ticks.iter().map(|r| r.limit).collect();
        limits.sort_unstable();
        println!(
            "{:>14} {:>8} {:>12} {:>12} {:>12}",
            format!("{:.0}-{:.0} s", from.as_secs_f64(), until.as_secs_f64()),
            capacity,
            limits.get(limits.len() / 2).map_or(0, |l| *l),
            ms(median(
                ticks.iter().filter_map(|r| r.adaptive_p99).collect()
            )),
            ms(median(ticks.iter().filter_map(|r| r.fixed_p99).collect())),
        );
    }
    println!(
        "\ntotals: adaptive served {} rejected {} timed out {}; fixed served {} rejected {} timed out {}",
        totals[0][0], totals[0][1], totals[0][2], totals[1][0], totals[1][1], totals[1][2]
    );

    std::fs::write(&svg_path, svg(&rows))?;
    println!("chart: {svg_path}");
    Ok(())
}

/// A line of the chart: its points (time, value), colour, dash style and label.
type Series<'a> = (Vec<(Duration, f64)>, &'a str, &'a str, &'a str);

/// Two panels: the dependency's capacity and the adaptive limit; the two p99s.
fn svg(rows: &[Row]) -> String {
    let (w, h, pad) = (720.0, 200.0, 40.0);
    let x = |at: Duration| pad + at.as_secs_f64() / RUN.as_secs_f64() * (w - 2.0 * pad);
    let line = |points: Vec<(f64, f64)>, color: &str, dash: &str| {
        let pts: Vec<String> = points
            .iter()
            .map(|(x, y)| format!("{x:.1},{y:.1}"))
            .collect();
        format!(
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" {dash} points=\"{}\"/>\n",
            pts.join(" ")
        )
    };
    let panel = |top: f64, max: f64, title: &str, series: &[Series<'_>]| {
        let y = |v: f64| top + h - v.min(max) / max * h;
        let mut out = format!(
            "<text x=\"{pad}\" y=\"{}\" font-size=\"13\">{title}</text>\n\
             <line x1=\"{pad}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#999\"/>\n\
             <text x=\"4\" y=\"{}\" font-size=\"10\">{max}</text><text x=\"4\" y=\"{}\" font-size=\"10\">0</text>\n",
            top - 6.0,
            top + h,
            w - pad,
            top + h,
            top + 10.0,
            top + h
        );
        for (i, (points, color, dash, label)) in series.iter().enumerate() {
            out += &line(
                points.iter().map(|(t, v)| (x(*t), y(*v))).collect(),
                color,
                dash,
            );
            out += &format!(
                "<text x=\"{}\" y=\"{}\" font-size=\"11\" fill=\"{color}\">{label}</text>\n",
                w - pad - 150.0,
                top + 14.0 + 14.0 * i as f64
            );
        }
        out
    };
    let series = |f: &dyn Fn(&Row) -> Option<f64>| -> Vec<(Duration, f64)> {
        rows.iter()
            .filter_map(|r| f(r).map(|v| (r.at, v)))
            .collect()
    };
    let p99 = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1e3);
    let mut body = panel(
        30.0,
        18.0,
        "calls at once: dependency capacity vs adaptive limit",
        &[
            (
                series(&|r| Some(r.capacity as f64)),
                "#888",
                "stroke-dasharray=\"4 3\"",
                "capacity",
            ),
            (
                series(&|r| Some(r.limit as f64)),
                "#1f77b4",
                "",
                "adaptive limit",
            ),
        ],
    );
    body += &panel(
        30.0 + h + 50.0,
        100.0,
        "p99 latency per 250 ms (ms)",
        &[
            (
                series(&|r| p99(r.adaptive_p99)),
                "#1f77b4",
                "",
                "adaptive pool",
            ),
            (
                series(&|r| p99(r.fixed_p99)),
                "#d62728",
                "",
                "fixed pool of 16",
            ),
        ],
    );
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{}\" font-family=\"sans-serif\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n{body}</svg>\n",
        2.0 * h + 110.0
    )
}
