//! The worked example, live: an order service on three real HTTP downstreams, one of which
//! falls sick mid-run, with and without bulkheads.
//!
//! `cargo run --release --example order_service` — about 30 seconds; `-- --help` for flags.
//!
//! Each order checks stock (inventory), charges the card (payment) and sends a confirmation
//! (email). The downstreams are tiny_http servers on 127.0.0.1 that this program starts; the
//! service calls them with ureq, each call through a bulkhead with a deadline, and the
//! socket timeout is what is left of that deadline (`Deadline::current()`, read inside the
//! task). Halfway through, email slows from 2 ms
//! to 2 s a call. The same load runs twice: (a) one bulkhead per dependency, sized by the
//! rule pool = peak rate × p99 latency × headroom; (b) one shared pool of the same total
//! size; (c) as (a) with a circuit breaker in front of email, and email recovering at three
//! quarters of the run. It prints orders/s, per-dependency latency and rejections for each
//! phase, the blast radius, the life of email's breaker in (c) — it opens within its window,
//! email calls stop taking threads (not permitted instead of rejected), the half-open probes
//! find email still sick, and once email recovers the breaker closes and confirmations flow
//! again — and writes an SVG chart of orders/s over time.

mod downstream;
mod load;
mod report;
mod service;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use load::{Layout, RunConfig, Sizes};
use service::Dep;

const HELP: &str = "\
order_service: an order service on three loopback HTTP downstreams; email falls sick mid-run.

USAGE:
    cargo run --release --example order_service -- [OPTIONS]

OPTIONS:
    --duration SECS     length of each of the three runs, 2..=60 (default 8);
                        email degrades halfway through (and in run (c)
                        recovers at three quarters)
    --rate N            orders offered per second, 10..=1000 (default 200)
    --headroom X        sizing headroom, 1..=10 (default 2)
    --inventory N       threads for inventory's pool (default: from the sizing rule)
    --payment N         threads for payment's pool (default: from the sizing rule)
    --email N           threads for email's pool (default: from the sizing rule)
    --out PATH          where to write the SVG chart (default target/order_service.svg)
    -h, --help          print this help
";

/// Calls per dependency used to measure its healthy p99 for the sizing rule.
const CALIBRATION_CALLS: usize = 100;

struct Args {
    duration: Duration,
    rate: f64,
    headroom: f64,
    threads: [Option<usize>; 3],
    out: PathBuf,
}

fn parse_args() -> Result<Option<Args>, Box<dyn std::error::Error>> {
    use lexopt::prelude::*;
    let mut args = Args {
        duration: Duration::from_secs(8),
        rate: 200.0,
        headroom: 2.0,
        threads: [None; 3],
        out: PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/target/order_service.svg"
        )),
    };
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(None),
            Long("duration") => {
                let secs: f64 = parser.value()?.parse()?;
                if !(2.0..=60.0).contains(&secs) {
                    return Err("--duration must be between 2 and 60 seconds".into());
                }
                args.duration = Duration::from_secs_f64(secs);
            }
            Long("rate") => {
                args.rate = parser.value()?.parse()?;
                if !(10.0..=1000.0).contains(&args.rate) {
                    return Err("--rate must be between 10 and 1000 orders/s".into());
                }
            }
            Long("headroom") => {
                args.headroom = parser.value()?.parse()?;
                if !(1.0..=10.0).contains(&args.headroom) {
                    return Err("--headroom must be between 1 and 10".into());
                }
            }
            Long(name @ ("inventory" | "payment" | "email")) => {
                let dep = match name {
                    "inventory" => Dep::Inventory,
                    "payment" => Dep::Payment,
                    _ => Dep::Email,
                };
                let n: usize = parser.value()?.parse()?;
                if !(1..=64).contains(&n) {
                    return Err(format!("--{} must be between 1 and 64 threads", dep.name()).into());
                }
                args.threads[dep.index()] = Some(n);
            }
            Long("out") => args.out = parser.value()?.into(),
            _ => return Err(arg.unexpected().into()),
        }
    }
    Ok(Some(args))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            eprintln!("order_service: {err} (see --help)");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("order_service: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let duration = args.duration.as_secs_f64();
    let degrade_at = args.duration / 2;
    println!("order = check stock (inventory) → charge card (payment) → send confirmation (email)");
    println!(
        "downstreams: tiny_http servers on 127.0.0.1, called with ureq; socket timeout = time left of the call's deadline"
    );
    println!(
        "load: {} orders/s for {duration:.0} s per run; email degrades from 2 ms to 2 s a call at t = {:.0} s",
        args.rate,
        degrade_at.as_secs_f64()
    );
    println!();

    // The sizing rule, with the p99 measured here rather than assumed.
    let p99 = load::measure_p99(CALIBRATION_CALLS)?;
    println!(
        "sizing: pool = peak rate × p99 latency × headroom  ({} orders/s, p99 of {CALIBRATION_CALLS} calls on loopback, headroom {})",
        args.rate, args.headroom
    );
    let mut sizes = Sizes {
        threads: [0; 3],
        queues: [0; 3],
    };
    for dep in Dep::ALL {
        let i = dep.index();
        let p99_ms = p99[i].as_secs_f64() * 1e3;
        let exact = args.rate * p99[i].as_secs_f64() * args.headroom;
        // At least 2 threads: one stall of one thread must not close the compartment.
        let rule = (exact.ceil() as usize).max(2);
        let threads = args.threads[i].unwrap_or(rule);
        // A short queue absorbs bursts; queued calls still count against their deadline.
        let queue = threads.div_ceil(2);
        sizes.threads[i] = threads;
        sizes.queues[i] = queue;
        let plural = if threads == 1 { "" } else { "s" };
        let chosen = match args.threads[i] {
            Some(_) => format!("{threads} thread{plural} (--{})", dep.name()),
            None => format!("{threads} thread{plural}"),
        };
        println!(
            "  {:<10} {}/s × {p99_ms:5.1} ms × {} = {exact:4.1} → {chosen}, queue {queue}, deadline {} ms",
            dep.name(),
            args.rate,
            args.headroom,
            dep.deadline().as_millis()
        );
    }
    println!(
        "  run (b) shares one pool of the same total size: {} threads, queue {}",
        sizes.total_threads(),
        sizes.total_queue()
    );
    println!(
        "  (the textbook's 50 and 30 threads are for a service with far more traffic; these are scaled to this machine)"
    );
    println!();

    println!(
        "figures: orders/s by completion time; latency = what the caller waited, admitted calls only (rejections are counted, not timed)"
    );
    println!(
        "phases: healthy = {:.1} s to {:.1} s (after warm-up), email sick = {:.1} s to {duration:.1} s; in run (c) email recovers at {:.1} s",
        report::WARM_UP,
        degrade_at.as_secs_f64(),
        degrade_at.as_secs_f64(),
        duration * 0.75,
    );
    println!();

    let config = RunConfig {
        layout: Layout::PerDependency,
        rate: args.rate,
        duration: args.duration,
        degrade_at,
        recover_at: None,
        sizes,
    };
    let a = load::run(&config, "(a) per dependency")?;
    let b = load::run(
        &RunConfig {
            layout: Layout::Shared,
            ..config
        },
        "(b) shared pool",
    )?;
    let recover_at = args.duration.mul_f64(0.75);
    let c = load::run(
        &RunConfig {
            layout: Layout::PerDependencyBreaker,
            recover_at: Some(recover_at),
            ..config
        },
        "(c) breaker on email",
    )?;

    let mut kept = Vec::new();
    for (title, run) in [
        ("(a) one bulkhead per dependency", &a),
        ("(b) one shared pool of the same total size", &b),
    ] {
        let healthy = report::phase(run, report::WARM_UP..run.degraded_at);
        let sick = report::phase(run, run.degraded_at..duration);
        kept.push(report::print_run(
            title,
            &[("healthy", &healthy), ("email sick", &sick)],
        ));
        println!();
        println!("{}", run.stats);
        println!(
            "recommended sizes, from what each pool observed over the whole run (sick phase included):"
        );
        println!("{}", run.recommendations);
    }
    let healthy = report::phase(&c, report::WARM_UP..c.degraded_at);
    let sick = report::phase(&c, c.degraded_at..c.recovered_at.min(duration));
    let recovered = report::phase(&c, c.recovered_at.min(duration)..duration);
    report::print_run(
        "(c) as (a), with a circuit breaker on email; email recovers",
        &[
            ("healthy", &healthy),
            ("email sick", &sick),
            ("email recovered", &recovered),
        ],
    );
    report::print_transitions(&c);
    println!();
    println!("{}", c.stats);
    println!(
        "blast radius (healthy order throughput kept while email was sick): (a) bulkheads {:.0}%, (b) shared pool {:.0}%",
        kept[0] * 100.0,
        kept[1] * 100.0
    );

    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    report::chart(&args.out, &a, &b, &c, args.rate, duration)?;
    println!("chart: {}", args.out.display());
    Ok(())
}
