//! Turning samples into the figures and the chart.

use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use plotters::prelude::*;

use bulkheads::CircuitState;

use crate::load::RunResult;
use crate::service::{Dep, Outcome};

/// Seconds at the start of a run left out of the healthy figures: connections open and
/// threads start then.
pub const WARM_UP: f64 = 0.5;
/// Width of one point of the chart, in seconds.
const BIN: f64 = 0.25;

/// The figures of one phase of one run.
#[derive(Debug)]
pub struct Phase {
    pub orders_per_s: f64,
    pub not_shipped: usize,
    pub send_later: usize,
    pub deps: [DepFigures; 3],
}

#[derive(Debug, Default)]
pub struct DepFigures {
    /// Latency seen by the caller, of the calls the bulkhead admitted.
    pub p50: Duration,
    pub p99: Duration,
    pub rejected: usize,
    pub timed_out: usize,
    /// Refused by the dependency's circuit breaker (run (c), email only).
    pub not_permitted: usize,
}

/// The figures of the calls that started and the orders that finished within `window`
/// (seconds into the run).
pub fn phase(run: &RunResult, window: Range<f64>) -> Phase {
    let orders = run.orders.iter().filter(|o| window.contains(&o.at));
    let (mut shipped, mut not_shipped, mut send_later) = (0, 0, 0);
    for order in orders {
        if order.shipped {
            shipped += 1;
        } else {
            not_shipped += 1;
        }
        send_later += usize::from(order.send_later);
    }
    let deps = Dep::ALL.map(|dep| {
        let calls: Vec<_> = run
            .calls
            .iter()
            .filter(|c| c.dep == dep && window.contains(&c.at))
            .collect();
        let mut waited: Vec<Duration> = calls
            .iter()
            .filter(|c| !matches!(c.outcome, Outcome::Rejected | Outcome::NotPermitted))
            .map(|c| c.waited)
            .collect();
        waited.sort();
        let count = |outcome| calls.iter().filter(|c| c.outcome == outcome).count();
        DepFigures {
            p50: percentile(&waited, 50),
            p99: percentile(&waited, 99),
            rejected: count(Outcome::Rejected),
            timed_out: count(Outcome::TimedOut),
            not_permitted: count(Outcome::NotPermitted),
        }
    });
    Phase {
        orders_per_s: shipped as f64 / (window.end - window.start),
        not_shipped,
        send_later,
        deps,
    }
}

/// The nearest-rank percentile of sorted samples; zero when there are none.
pub fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[(sorted.len() * p).div_ceil(100).saturating_sub(1)]
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms >= 100.0 {
        format!("{ms:.0}")
    } else {
        format!("{ms:.1}")
    }
}

/// Prints one run's phases side by side (healthy first, email sick second, then any
/// others) and returns its blast radius: the share of healthy order throughput kept while
/// email was sick.
pub fn print_run(title: &str, phases: &[(&str, &Phase)]) -> f64 {
    println!("{title}");
    let mut header = format!("  {:<34}", "");
    for (name, _) in phases {
        header.push_str(&format!("{name:>18}"));
    }
    println!("{header}");
    let row = |label: &str, cell: &dyn Fn(&Phase) -> String| {
        let mut line = format!("  {label:<34}");
        for (_, phase) in phases {
            line.push_str(&format!("{:>18}", cell(phase)));
        }
        println!("{line}");
    };
    row("orders shipped / s", &|p| format!("{:.1}", p.orders_per_s));
    row("orders not shipped", &|p| p.not_shipped.to_string());
    row("confirmations \"send later\"", &|p| {
        p.send_later.to_string()
    });
    for dep in Dep::ALL {
        row(&format!("{:<10} p50 / p99 ms", dep.name()), &|p| {
            let d = &p.deps[dep.index()];
            format!("{} / {}", ms(d.p50), ms(d.p99))
        });
    }
    let counts = |phase: &Phase, f: fn(&DepFigures) -> usize| {
        phase
            .deps
            .iter()
            .map(|d| f(d).to_string())
            .collect::<Vec<_>>()
            .join(" / ")
    };
    row("rejected   inv / pay / email", &|p| {
        counts(p, |d| d.rejected)
    });
    row("timed out  inv / pay / email", &|p| {
        counts(p, |d| d.timed_out)
    });
    let breaker = phases
        .iter()
        .any(|(_, p)| p.deps.iter().any(|d| d.not_permitted > 0));
    if breaker {
        row("not permitted by email's breaker", &|p| {
            p.deps[Dep::Email.index()].not_permitted.to_string()
        });
    }
    let (healthy, sick) = (phases[0].1, phases[1].1);
    let kept = if healthy.orders_per_s > 0.0 {
        sick.orders_per_s / healthy.orders_per_s
    } else {
        0.0
    };
    println!(
        "  blast radius: {:.0}% of healthy order throughput kept while email was sick",
        kept * 100.0
    );
    kept
}

/// Prints the life of email's breaker: each transition with its time, and what email was
/// doing then.
pub fn print_transitions(run: &RunResult) {
    if run.transitions.is_empty() {
        return;
    }
    println!("  email's circuit breaker:");
    for &(at, from, to) in &run.transitions {
        let email = if at >= run.recovered_at {
            "recovered"
        } else if at >= run.degraded_at {
            "sick"
        } else {
            "healthy"
        };
        let why = match (from, to) {
            (CircuitState::Closed, CircuitState::Open) => "half the window failed: stop calling",
            (CircuitState::Open, CircuitState::HalfOpen) => "the wait is over: probe",
            (CircuitState::HalfOpen, CircuitState::Open) => "the probes failed: wait again",
            (CircuitState::HalfOpen, CircuitState::Closed) => "the probes succeeded: call again",
            _ => "",
        };
        println!("    t = {at:5.2} s  {from:>9} -> {to:<9}  (email {email}) {why}");
    }
}

/// Orders shipped per second over time, in bins of `BIN` seconds.
fn series(run: &RunResult, duration: f64) -> Vec<(f64, f64)> {
    let bins = (duration / BIN).round() as usize;
    let mut counts = vec![0_u32; bins];
    for order in run.orders.iter().filter(|o| o.shipped) {
        if let Some(slot) = counts.get_mut((order.at / BIN) as usize) {
            *slot += 1;
        }
    }
    counts
        .iter()
        .enumerate()
        .map(|(i, &n)| ((i as f64 + 0.5) * BIN, f64::from(n) / BIN))
        .collect()
}

/// Draws orders/s over time for both runs, the moment email degraded marked, as SVG.
pub fn chart(
    path: &Path,
    per_dependency: &RunResult,
    shared: &RunResult,
    breaker: &RunResult,
    rate: f64,
    duration: f64,
) -> Result<(), Box<dyn std::error::Error>> {
    let a = series(per_dependency, duration);
    let b = series(shared, duration);
    let c = series(breaker, duration);
    let top = a
        .iter()
        .chain(&b)
        .chain(&c)
        .map(|p| p.1)
        .fold(rate, f64::max)
        * 1.15;
    let root = SVGBackend::new(path, (960, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Orders shipped per second while email degrades from 2 ms to 2 s",
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..duration, 0.0..top)?;
    chart
        .configure_mesh()
        .x_desc("seconds into the run")
        .y_desc("orders shipped / s")
        .axis_desc_style(("sans-serif", 18))
        .label_style(("sans-serif", 15))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .x_label_formatter(&|v| format!("{v:.0}"))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;

    let blue = RGBColor(31, 119, 180);
    let red = RGBColor(214, 39, 40);
    chart
        .draw_series(LineSeries::new(a, blue.stroke_width(3)))?
        .label("(a) one bulkhead per dependency")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], blue.stroke_width(3)));
    chart
        .draw_series(LineSeries::new(b, red.stroke_width(3)))?
        .label("(b) one shared pool, same total size")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], red.stroke_width(3)));
    let green = RGBColor(44, 160, 44);
    chart
        .draw_series(LineSeries::new(c, green.stroke_width(2)))?
        .label("(c) as (a), a breaker on email; email recovers")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], green.stroke_width(2)));
    // Where email's breaker opened (o) and closed again (c), on run (c)'s line.
    let marks = breaker
        .transitions
        .iter()
        .filter_map(|&(at, _, to)| match to {
            CircuitState::Open => Some((at, "open")),
            CircuitState::Closed => Some((at, "closed")),
            _ => None,
        });
    for (i, (at, mark)) in marks.enumerate() {
        // Staggered heights: marks half a second apart would overlap on one line.
        let height = top * (0.04 + 0.05 * (i % 3) as f64);
        chart.draw_series(std::iter::once(Text::new(
            format!("breaker {mark}"),
            (at, height),
            ("sans-serif", 13).into_font().color(&green),
        )))?;
        chart.draw_series(DashedLineSeries::new(
            vec![(at, 0.0), (at, height)],
            3,
            3,
            green.stroke_width(1),
        ))?;
    }
    chart
        .draw_series(DashedLineSeries::new(
            vec![(0.0, rate), (duration, rate)],
            4,
            4,
            BLACK.mix(0.4).stroke_width(1),
        ))?
        .label("orders offered / s")
        .legend(|(x, y)| {
            PathElement::new(vec![(x, y), (x + 24, y)], BLACK.mix(0.4).stroke_width(1))
        });

    let degraded = per_dependency.degraded_at.min(shared.degraded_at);
    if degraded.is_finite() {
        chart.draw_series(DashedLineSeries::new(
            vec![(degraded, 0.0), (degraded, top)],
            8,
            6,
            BLACK.stroke_width(2),
        ))?;
        chart.draw_series(std::iter::once(Text::new(
            "email degrades: 2 ms → 2 s",
            (degraded + duration * 0.01, top * 0.97),
            ("sans-serif", 16),
        )))?;
    }
    if breaker.recovered_at.is_finite() {
        let recovered = breaker.recovered_at;
        chart.draw_series(DashedLineSeries::new(
            vec![(recovered, 0.0), (recovered, top)],
            8,
            6,
            green.stroke_width(2),
        ))?;
        chart.draw_series(std::iter::once(Text::new(
            "(c) email recovers",
            (recovered + duration * 0.01, top * 0.92),
            ("sans-serif", 16),
        )))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.5))
        .label_font(("sans-serif", 16))
        .draw()?;
    root.present()?;
    Ok(())
}
