//! A thumbnail service whose converter hangs on one input, run without and with a
//! `ProcessBulkhead` (Unix only).
//!
//! The service has 4 request threads; each request runs a converter (a shell script
//! standing in for ImageMagick) on one image. One image, `cursed.png`, makes the converter
//! hang — it starts a helper and waits for it for ever — and users keep retrying it.
//!
//! - Without the bulkhead, each cursed request holds a request thread for good: once four
//!   have come in, the service answers nothing more, and the hung converters pile up.
//! - With the bulkhead (2 converters at once, 2 waiting, a 500 ms deadline), a cursed
//!   request gets its answer (504) at its deadline, its converter and the converter's
//!   helper are killed, and every other request is served.
//!
//! Run it with `cargo run --example thumbnail`.

#[cfg(not(unix))]
fn main() {
    eprintln!("the process bulkhead is Unix only");
}

#[cfg(unix)]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    service::main()
}

#[cfg(unix)]
mod service {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};
    use std::sync::mpsc;
    use std::sync::{Arc, Mutex};
    use std::thread;
    use std::time::{Duration, Instant};

    use bulkheads::{ProcessBulkhead, ProcessConfig};

    const REQUESTS: usize = 40;
    const REQUEST_THREADS: usize = 4;
    /// How long the service without a bulkhead is given before we look at it.
    const PATIENCE: Duration = Duration::from_secs(3);

    /// The converter: 50 ms of "work" for an ordinary image; for the cursed one it starts a
    /// helper (a grandchild of the service) and waits for it, for ever.
    const CONVERTER: &str = r#"#!/bin/sh
case "$1" in
  cursed.png) sleep 3600 & wait ;;
  *) sleep 0.05; echo "thumbnail of $1" ;;
esac
"#;

    fn inputs() -> Vec<String> {
        (0..REQUESTS)
            .map(|i| {
                // The cursed image, and users retrying it.
                if i % 8 == 3 {
                    "cursed.png".to_owned()
                } else {
                    format!("photo-{i}.jpg")
                }
            })
            .collect()
    }

    /// What one request got, and when (since the service started).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Answer {
        Ok,
        GatewayTimeout,
        Unavailable,
        Error,
    }

    struct Report {
        answers: Vec<(Answer, Duration)>,
        unanswered: usize,
        elapsed: Duration,
        left_running: usize,
    }

    /// Serves every input with `REQUEST_THREADS` threads calling `thumbnail`; waits at most
    /// `patience` for the answers.
    fn serve(
        thumbnail: Arc<dyn Fn(&str) -> Answer + Send + Sync>,
        patience: Duration,
    ) -> (Vec<(Answer, Duration)>, Duration) {
        let (work_tx, work_rx) = mpsc::channel::<String>();
        let work_rx = Arc::new(Mutex::new(work_rx));
        let (done_tx, done_rx) = mpsc::channel();
        let start = Instant::now();
        for input in inputs() {
            work_tx.send(input).unwrap();
        }
        drop(work_tx);
        for _ in 0..REQUEST_THREADS {
            let work_rx = Arc::clone(&work_rx);
            let done_tx = done_tx.clone();
            let thumbnail = Arc::clone(&thumbnail);
            // Detached: a thread stuck on a hung converter is what this example shows.
            thread::spawn(move || {
                loop {
                    let input = match work_rx.lock().unwrap().recv() {
                        Ok(input) => input,
                        Err(_) => return,
                    };
                    let answer = thumbnail(&input);
                    let _ = done_tx.send((answer, start.elapsed()));
                }
            });
        }
        drop(done_tx);
        let until = start + patience;
        let mut answers = Vec::new();
        while answers.len() < REQUESTS {
            let now = Instant::now();
            if now >= until {
                break;
            }
            match done_rx.recv_timeout(until - now) {
                Ok(answer) => answers.push(answer),
                Err(_) => break,
            }
        }
        let elapsed = start.elapsed();
        // Requests not yet taken are dropped: a thread freed later takes no more work.
        while work_rx.lock().unwrap().try_recv().is_ok() {}
        (answers, elapsed)
    }

    /// Process groups of converters started without a bulkhead, to count and clean up.
    type Groups = Arc<Mutex<Vec<u32>>>;

    fn without_bulkhead(converter: &Path) -> Report {
        let groups: Groups = Arc::default();
        let thumbnail = {
            let converter = converter.to_owned();
            let groups = Arc::clone(&groups);
            Arc::new(move |input: &str| {
                // The usual code: spawn and wait for the output. The process group is only
                // for this example's clean-up at the end.
                let child = Command::new(&converter)
                    .arg(input)
                    .process_group(0)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn();
                let Ok(child) = child else {
                    return Answer::Error;
                };
                groups.lock().unwrap().push(child.id());
                match child.wait_with_output() {
                    Ok(out) if out.status.success() => Answer::Ok,
                    _ => Answer::Error,
                }
            })
        };
        let (answers, elapsed) = serve(thumbnail, PATIENCE);
        let groups = std::mem::take(&mut *groups.lock().unwrap());
        let left_running = hung_processes();
        // Clean up what the service could not: kill the hung converters' groups.
        for pgid in groups {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pgid}")])
                .stderr(Stdio::null())
                .status();
        }
        Report {
            unanswered: REQUESTS - answers.len(),
            answers,
            elapsed,
            left_running,
        }
    }

    fn with_bulkhead(
        converter: &Path,
    ) -> Result<(Report, Arc<ProcessBulkhead>), Box<dyn std::error::Error>> {
        let bulkhead = Arc::new(ProcessBulkhead::new(
            "thumbnail",
            ProcessConfig::new(2)
                .queue_capacity(2)
                .timeout(Duration::from_millis(500))
                .kill_grace(Duration::from_millis(200))
                .max_output(1 << 20)
                .cpu_time(Duration::from_secs(10))
                .max_open_files(64),
        )?);
        let thumbnail = {
            let converter = converter.to_owned();
            let bulkhead = Arc::clone(&bulkhead);
            Arc::new(move |input: &str| {
                let mut cmd = Command::new(&converter);
                cmd.arg(input);
                match bulkhead.run(cmd) {
                    Ok(out) if out.timed_out => Answer::GatewayTimeout,
                    Ok(out) if out.status.success() => Answer::Ok,
                    Ok(_) => Answer::Error,
                    Err(e) if e.is_rejected() || e.is_timeout() => Answer::Unavailable,
                    Err(_) => Answer::Error,
                }
            })
        };
        let (answers, elapsed) = serve(thumbnail, PATIENCE * 10);
        let report = Report {
            unanswered: REQUESTS - answers.len(),
            answers,
            elapsed,
            left_running: hung_processes(),
        };
        Ok((report, bulkhead))
    }

    /// Converters and their helpers still running (zombies do not count): processes whose
    /// command line names the converter, or is the helper's `sleep 3600`.
    fn hung_processes() -> usize {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return 0;
        };
        entries
            .flatten()
            .filter(|e| {
                let running = std::fs::read_to_string(e.path().join("stat"))
                    .ok()
                    .and_then(|stat| {
                        let (_, rest) = stat.rsplit_once(')')?;
                        Some(!rest.trim_start().starts_with('Z'))
                    })
                    .unwrap_or(false);
                let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
                let cmdline = String::from_utf8_lossy(&cmdline);
                running
                    && (cmdline.contains("thumbnail-example-") || cmdline == "sleep\x003600\x00")
            })
            .count()
    }

    fn print(title: &str, r: &Report) {
        let count = |a: Answer| r.answers.iter().filter(|(x, _)| *x == a).count();
        let mut ok: Vec<Duration> = r
            .answers
            .iter()
            .filter(|(a, _)| *a == Answer::Ok)
            .map(|(_, t)| *t)
            .collect();
        ok.sort();
        let last_ok = ok.last().copied().unwrap_or_default();
        println!("{title}");
        println!(
            "  answered {:>2}/{REQUESTS}: {} thumbnails, {} gateway timeouts, {} unavailable, {} errors",
            r.answers.len(),
            count(Answer::Ok),
            count(Answer::GatewayTimeout),
            count(Answer::Unavailable),
            count(Answer::Error),
        );
        println!("  never answered: {}", r.unanswered);
        println!("  last thumbnail served at {:.2} s", last_ok.as_secs_f64());
        println!("  looked at after {:.2} s", r.elapsed.as_secs_f64());
        println!(
            "  hung converter processes (and helpers) then: {}",
            r.left_running
        );
    }

    pub(super) fn main() -> Result<(), Box<dyn std::error::Error>> {
        let dir = std::env::temp_dir().join(format!("thumbnail-example-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let converter: PathBuf = dir.join("convert.sh");
        std::fs::write(&converter, CONVERTER)?;
        std::fs::set_permissions(&converter, std::fs::Permissions::from_mode(0o755))?;
        let cursed = inputs().iter().filter(|i| *i == "cursed.png").count();
        println!(
            "{REQUESTS} requests ({cursed} for cursed.png), {REQUEST_THREADS} request threads, 50 ms per thumbnail\n"
        );

        let naive = without_bulkhead(&converter);
        print(
            &format!("without a bulkhead (given {} s):", PATIENCE.as_secs()),
            &naive,
        );
        println!();
        let (guarded, bulkhead) = with_bulkhead(&converter)?;
        print(
            "with ProcessBulkhead (2 slots, queue 2, 500 ms deadline):",
            &guarded,
        );
        println!();
        print!("{}", bulkhead.stats());
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
