//! The sizing calculator: how many threads and how long a queue for one dependency.
//!
//! `cargo run --example sizing -- --rate 200 --p99 80ms --headroom 1.5`
//!
//! Prints the seed formula (threads = peak rate × p99 × headroom), then what the M/M/c/K
//! model says of that size and of sizes around it — from −50% to +50%, and the sizes where
//! the load meets the threads — so the knee, where blocking and waits take off, is in view.
//! `-- --help` for the flags.

use std::process::ExitCode;
use std::time::Duration;

use bulkheads::sizing::{MmcK, SizingError, erlang_b, pool_size, servers_for_blocking};

const HELP: &str = "\
sizing: threads and queue for one dependency, by the seed formula and the M/M/c/K model.

USAGE:
    cargo run --example sizing -- --rate N --p99 DURATION [OPTIONS]

OPTIONS:
    --rate N            peak calls per second (required)
    --p99 DURATION      p99 latency of one call: 80ms, 0.08s, 500us (required)
    --headroom X        factor on rate × p99 (default 1.5)
    --mean DURATION     mean latency, the model's service time (default: p99 / ln 100,
                        the mean of an exponential whose p99 that is)
    --queue N           queue capacity to model (default: the shortest that keeps blocking
                        at most --max-blocking at rate × headroom)
    --max-blocking P    blocking target for the default queue (default 0.01)
    -h, --help          print this help
";

struct Args {
    rate: f64,
    p99: Duration,
    headroom: f64,
    mean: Option<Duration>,
    queue: Option<usize>,
    max_blocking: f64,
}

/// `80ms`, `0.08s`, `500us`, `2m`; a bare number is seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == 'e' || c == '-' || c == '+'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration (try 80ms)"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1e3,
        "us" | "µs" => value / 1e6,
        "ns" => value / 1e9,
        "m" | "min" => value * 60.0,
        other => {
            return Err(format!(
                "unknown unit '{other}' in '{text}' (ns, us, ms, s, m)"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("'{text}' is not a valid duration"))
}

fn parse_args() -> Result<Option<Args>, Box<dyn std::error::Error>> {
    use lexopt::prelude::*;
    let (mut rate, mut p99) = (None, None);
    let mut args = Args {
        rate: 0.0,
        p99: Duration::ZERO,
        headroom: 1.5,
        mean: None,
        queue: None,
        max_blocking: 0.01,
    };
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(None),
            Long("rate") => rate = Some(parser.value()?.parse()?),
            Long("p99") => p99 = Some(parse_duration(&parser.value()?.string()?)?),
            Long("headroom") => args.headroom = parser.value()?.parse()?,
            Long("mean") => args.mean = Some(parse_duration(&parser.value()?.string()?)?),
            Long("queue") => args.queue = Some(parser.value()?.parse()?),
            Long("max-blocking") => args.max_blocking = parser.value()?.parse()?,
            _ => return Err(arg.unexpected().into()),
        }
    }
    args.rate = rate.ok_or("--rate is required")?;
    args.p99 = p99.ok_or("--p99 is required")?;
    Ok(Some(args))
}

fn main() -> ExitCode {
    match parse_args() {
        Ok(Some(args)) => match run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("sizing: {err}");
                ExitCode::FAILURE
            }
        },
        Ok(None) => {
            print!("{HELP}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("sizing: {err} (see --help)");
            ExitCode::from(2)
        }
    }
}

fn ms(seconds: f64) -> String {
    if seconds == 0.0 {
        "0".to_owned()
    } else if seconds >= 1.0 {
        format!("{seconds:.2} s")
    } else if seconds >= 1e-3 {
        format!("{:.2} ms", seconds * 1e3)
    } else {
        format!("{:.1} µs", seconds * 1e6)
    }
}

fn pct(p: f64) -> String {
    let pct = p * 100.0;
    if pct == 0.0 {
        "0%".to_owned()
    } else if pct >= 0.01 {
        format!("{pct:.2}%")
    } else {
        format!("{pct:.1e}%")
    }
}

/// The shortest queue (up to 10,000) that keeps blocking at most `target`.
fn shortest_queue(rate: f64, mu: f64, c: usize, target: f64) -> Result<Option<usize>, SizingError> {
    for q in 0..=10_000 {
        if MmcK::new(rate, mu, c, c + q)?.blocking_probability() <= target {
            return Ok(Some(q));
        }
    }
    Ok(None)
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let p99 = args.p99.as_secs_f64();
    let threads = pool_size(args.rate, p99, args.headroom)?;
    let exact = args.rate * p99 * args.headroom;
    println!(
        "seed formula: threads = peak rate × p99 × headroom = {}/s × {} × {} = {exact:.1} → {threads}",
        args.rate,
        ms(p99),
        args.headroom
    );

    let (mean, how) = match args.mean {
        Some(mean) => (mean.as_secs_f64(), "--mean"),
        // The p99 of an exponential distribution is ln(100) ≈ 4.6 times its mean.
        None => (
            p99 / 100_f64.ln(),
            "p99 / ln 100, as for exponential service",
        ),
    };
    if mean == 0.0 {
        return Err("the mean latency must be above zero".into());
    }
    let mu = 1.0 / mean;
    let load = args.rate * mean;
    let surge = args.rate * args.headroom;
    println!(
        "service time: mean {} ({how}); offered load {}/s × {} = {load:.2} erlangs",
        ms(mean),
        args.rate,
        ms(mean)
    );
    let queue = match args.queue {
        Some(q) => {
            println!("queue: {q} (--queue)");
            q
        }
        None => match shortest_queue(surge, mu, threads, args.max_blocking)? {
            Some(q) => {
                println!(
                    "queue: {q}, the shortest that keeps blocking ≤ {} at {surge:.0}/s (rate × headroom)",
                    pct(args.max_blocking)
                );
                q
            }
            None => {
                println!(
                    "queue: no queue up to 10000 keeps blocking ≤ {} at {surge:.0}/s; modelling none",
                    pct(args.max_blocking)
                );
                0
            }
        },
    };
    println!(
        "without a queue, Erlang B: {threads} threads block {} at {}/s; {} threads are the fewest for ≤ {}",
        pct(erlang_b(threads, load)?),
        args.rate,
        servers_for_blocking(load, args.max_blocking)?,
        pct(args.max_blocking)
    );
    println!();

    // The sizes to show: ±50% around the recommendation in steps of 25%, and the knee —
    // where the threads just carry the load, and one either side.
    let mut sizes: Vec<(usize, String)> = [0.5, 0.75, 1.0, 1.25, 1.5]
        .iter()
        .map(|f| {
            let n = ((threads as f64 * f).round() as usize).max(1);
            let label = match *f {
                1.0 => "recommended".to_owned(),
                f if f < 1.0 => format!("−{:.0}%", (1.0 - f) * 100.0),
                f => format!("+{:.0}%", (f - 1.0) * 100.0),
            };
            (n, label)
        })
        .collect();
    let knee = load.ceil().max(1.0) as usize;
    for (n, label) in [
        (knee.saturating_sub(1).max(1), "below the load"),
        (knee, "load, rounded up"),
        (knee + 1, "above the load"),
    ] {
        if !sizes.iter().any(|(m, _)| *m == n) {
            sizes.push((n, label.to_owned()));
        }
    }
    sizes.sort_by_key(|(n, _)| *n);

    println!(
        "M/M/c/K, queue {queue}: at {}/s (the rate) and at {surge:.0}/s (rate × headroom)",
        args.rate
    );
    let header = [
        "threads",
        "",
        "busy",
        "blocking",
        "mean wait",
        "response",
        "blocking ×h",
        "wait ×h",
    ];
    let mut rows = vec![header.map(str::to_owned)];
    for (n, label) in &sizes {
        let at = MmcK::new(args.rate, mu, *n, n + queue)?;
        let up = MmcK::new(surge, mu, *n, n + queue)?;
        rows.push([
            n.to_string(),
            label.clone(),
            format!("{:.0}%", at.utilization() * 100.0),
            pct(at.blocking_probability()),
            ms(at.mean_wait()),
            ms(at.mean_response()),
            pct(up.blocking_probability()),
            ms(up.mean_wait()),
        ]);
    }
    let mut widths = [0_usize; 8];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in &rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i == 1 {
                line.push_str(&format!("{cell:<w$}  "));
            } else {
                line.push_str(&format!("{cell:>w$}  "));
            }
        }
        println!("{}", line.trim_end());
    }
    println!();
    println!(
        "assumes Poisson arrivals and exponential service; bursts and long tails block and wait more"
    );
    Ok(())
}
