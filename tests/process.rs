//! The process bulkhead, with only `sh` and coreutils: deadlines that stop a whole process
//! group (grandchildren too, `SIGTERM` ignored or not), both pipes at once, the output cap,
//! resource limits seen from inside the child, no zombies, rejection, a missing program.
//!
//! Waits are bounded polls on a state, never sleeps; their bounds are generous (seconds),
//! because the machine that runs them may be busy. Tests of one binary share a process, so
//! a check on "our children" allows for other tests' children: it looks for zombies only,
//! and waits for any it sees to be reaped.
#![cfg(target_os = "linux")]

use std::fs;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bulkheads::{BulkheadStats, EventKind, ManagerStats, ProcessBulkhead, ProcessConfig};

const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;
const SIGXCPU: i32 = 24;

fn sh(script: &str) -> Command {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", script]);
    cmd
}

/// Polls `done` until it holds or `bound` passes; true if it held.
fn eventually(bound: Duration, mut done: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + bound;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::yield_now();
        std::thread::park_timeout(Duration::from_millis(5));
    }
}

/// The state letter of process `pid` (`R`, `S`, `Z`, …), or `None` if there is none.
fn state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name in parentheses may hold spaces; the state follows the last ')'.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// True when `pid` runs no more: gone, or a zombie waiting for its parent (an orphan's
/// parent, pid 1, may reap it only seconds later).
fn gone(pid: u32) -> bool {
    matches!(state(pid), None | Some('Z' | 'X'))
}

fn pids(out: &[u8]) -> Vec<u32> {
    String::from_utf8_lossy(out)
        .split_whitespace()
        .map(|p| p.parse().expect("a pid"))
        .collect()
}

/// Zombie children of this process now.
fn our_zombies() -> Vec<u32> {
    let me = std::process::id();
    let mut zombies = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let (state, ppid) = (fields.next(), fields.next());
        if state == Some("Z") && ppid == Some(&me.to_string()) {
            zombies.push(pid);
        }
    }
    zombies
}

/// A named pipe: a child that reads it blocks until the test writes and closes it, which
/// holds a slot for exactly as long as the test wants, with no sleep.
struct Fifo {
    dir: PathBuf,
}

impl Fifo {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("bulkheads-{}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let status = Command::new("mkfifo")
            .arg(dir.join("fifo"))
            .status()
            .unwrap();
        assert!(status.success());
        Self { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.join("fifo")
    }

    /// A command that blocks reading the fifo.
    fn reader(&self) -> Command {
        let mut cmd = Command::new("cat");
        cmd.arg(self.path());
        cmd
    }

    /// Opens the fifo for writing (which waits for the reader) and closes it: the reader
    /// sees its end.
    fn release(&self) {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .open(self.path())
            .unwrap();
        f.write_all(b"go\n").unwrap();
    }
}

impl Drop for Fifo {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn output_and_status_come_back() {
    let bh = ProcessBulkhead::new("basic", ProcessConfig::new(2)).unwrap();
    let out = bh.run(sh("echo out; echo err >&2; exit 7")).unwrap();
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr, b"err\n");
    assert!(!out.timed_out && !out.truncated && !out.killed);
    let stats = bh.stats();
    assert_eq!(
        (stats.started, stats.completed, stats.exit_failures),
        (1, 1, 1)
    );
    assert_eq!(stats.running, 0);
}

#[test]
fn deadline_stops_the_whole_group_grandchild_included() {
    let bh = ProcessBulkhead::new(
        "hung",
        ProcessConfig::new(1)
            .timeout(Duration::from_millis(300))
            .kill_grace(Duration::from_secs(5)),
    )
    .unwrap();
    let started = Instant::now();
    // The leader's pid and its background child's, then both hang.
    let out = bh.run(sh("sleep 100 & echo $$ $!; sleep 100")).unwrap();
    let took = started.elapsed();
    assert!(out.timed_out, "{out:?}");
    assert!(
        !out.killed,
        "sleep and sh die of SIGTERM: no SIGKILL needed"
    );
    assert_eq!(out.status.signal(), Some(SIGTERM));
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(
        took < Duration::from_secs(5),
        "returned long after the deadline: {took:?}"
    );
    let pids = pids(&out.stdout);
    assert_eq!(pids.len(), 2, "{out:?}");
    for pid in pids {
        assert!(
            eventually(Duration::from_secs(10), || gone(pid)),
            "process {pid} still runs after run returned: {:?}",
            state(pid)
        );
    }
    let stats = bh.stats();
    assert_eq!((stats.timed_out, stats.killed, stats.completed), (1, 0, 0));
}

#[test]
fn sigterm_ignored_means_sigkill_after_the_grace() {
    let grace = Duration::from_millis(300);
    let bh = ProcessBulkhead::new(
        "stubborn",
        ProcessConfig::new(1)
            .timeout(Duration::from_millis(200))
            .kill_grace(grace),
    )
    .unwrap();
    let started = Instant::now();
    // An ignored signal stays ignored across exec: the sleeps ignore SIGTERM too.
    let out = bh
        .run(sh("trap '' TERM; sleep 100 & echo $!; sleep 100"))
        .unwrap();
    let took = started.elapsed();
    assert!(out.timed_out && out.killed, "{out:?}");
    assert_eq!(out.status.signal(), Some(SIGKILL));
    assert!(took >= Duration::from_millis(200) + grace, "{took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    let grandchild = pids(&out.stdout)[0];
    assert!(eventually(Duration::from_secs(10), || gone(grandchild)));
    assert_eq!(bh.stats().killed, 1);
}

#[test]
fn a_grandchild_holding_the_pipes_cannot_outlast_the_deadline() {
    let bh = ProcessBulkhead::new(
        "leaky",
        ProcessConfig::new(1)
            .timeout(Duration::from_millis(300))
            .kill_grace(Duration::from_millis(300)),
    )
    .unwrap();
    let started = Instant::now();
    // The leader exits at once; its child keeps stdout and stderr open.
    let out = bh.run(sh("sleep 100 & echo $!")).unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(out.timed_out, "work of the call was still running: {out:?}");
    assert_eq!(out.status.code(), Some(0), "the leader's own exit");
    let grandchild = pids(&out.stdout)[0];
    assert!(eventually(Duration::from_secs(10), || gone(grandchild)));
}

#[test]
fn what_the_program_leaves_running_is_killed_when_it_exits() {
    let bh = ProcessBulkhead::new("sweep", ProcessConfig::new(1)).unwrap();
    // Output elsewhere, so the pipes close when the leader exits: no deadline needed.
    let out = bh.run(sh("sleep 100 >/dev/null 2>&1 & echo $!")).unwrap();
    assert!(!out.timed_out && out.status.success(), "{out:?}");
    let grandchild = pids(&out.stdout)[0];
    assert!(
        eventually(Duration::from_secs(10), || gone(grandchild)),
        "{grandchild} outlived its call: {:?}",
        state(grandchild)
    );
}

#[test]
fn output_past_the_cap_is_drained_and_cut() {
    let bh = ProcessBulkhead::new(
        "capped",
        ProcessConfig::new(1)
            .max_output(1000)
            .timeout(Duration::from_secs(60)),
    )
    .unwrap();
    let out = bh.run(sh("head -c 1000000 /dev/zero")).unwrap();
    assert!(
        out.status.success(),
        "the child never blocked on a full pipe"
    );
    assert!(!out.timed_out);
    assert_eq!(out.stdout.len(), 1000);
    assert!(out.truncated);
    assert!(out.stderr.is_empty());
    assert_eq!(bh.stats().truncated, 1);
}

#[test]
fn both_pipes_are_drained_at_once() {
    let bh = ProcessBulkhead::new(
        "both",
        ProcessConfig::new(1).timeout(Duration::from_secs(60)),
    )
    .unwrap();
    // stderr first: a parent that read stdout to its end first would deadlock here, the
    // child blocked on a full stderr pipe and stdout never closing.
    let out = bh
        .run(sh(
            "head -c 1000000 /dev/zero >&2; head -c 1000000 /dev/zero; head -c 300000 /dev/zero >&2",
        ))
        .unwrap();
    assert!(!out.timed_out && out.status.success(), "{:?}", out.status);
    assert_eq!(out.stdout.len(), 1_000_000);
    assert_eq!(out.stderr.len(), 1_300_000);
    assert!(!out.truncated);
}

#[test]
fn limits_are_visible_inside_the_child() {
    let bh = ProcessBulkhead::new(
        "limited",
        ProcessConfig::new(1)
            .max_open_files(37)
            .cpu_time(Duration::from_millis(6500))
            .address_space(1 << 30)
            .timeout(Duration::from_secs(60)),
    )
    .unwrap();
    let out = bh
        .run(sh(
            "ulimit -n; ulimit -Hn; ulimit -t; ulimit -Ht; ulimit -v; ulimit -Hv",
        ))
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "37\n37\n7\n8\n1048576\n1048576\n"
    );
}

#[test]
fn environment_and_directory_carry_through_the_limits_shell() {
    let bh = ProcessBulkhead::new("carried", ProcessConfig::new(1).max_open_files(64)).unwrap();
    let mut cmd = sh("echo \"$GREETING\"; pwd; echo \"${HOME-unset}\"");
    cmd.env("GREETING", "hello world")
        .env_remove("HOME")
        .current_dir("/");
    let out = bh.run(cmd).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello world\n/\nunset\n"
    );
}

#[test]
fn cpu_limit_stops_a_spinning_program() {
    let bh = ProcessBulkhead::new(
        "spinner",
        ProcessConfig::new(1)
            .cpu_time(Duration::from_secs(1))
            .timeout(Duration::from_secs(60)),
    )
    .unwrap();
    let out = bh.run(sh("while :; do :; done")).unwrap();
    assert!(!out.timed_out, "the CPU limit, not the deadline, ended it");
    assert!(
        matches!(out.status.signal(), Some(SIGXCPU | SIGKILL)),
        "{:?}",
        out.status
    );
    assert_eq!(bh.stats().exit_failures, 1);
}

#[test]
fn a_missing_program_is_an_error_and_returns_the_slot() {
    for config in [
        ProcessConfig::new(1),
        ProcessConfig::new(1).max_open_files(64),
    ] {
        let limited = config.has_limits();
        let bh = ProcessBulkhead::new("missing", config).unwrap();
        let err = bh
            .run(Command::new("no-such-program-for-bulkheads"))
            .unwrap_err();
        assert!(err.is_start(), "{err:?} (limits: {limited})");
        assert_eq!(err.bulkhead(), "missing");
        let text = err.to_string();
        assert!(text.contains("'missing'"), "{text}");
        assert!(text.contains("no-such-program-for-bulkheads"), "{text}");
        let err = bh.run(Command::new("/no/such/dir/prog")).unwrap_err();
        assert!(err.is_start(), "{err:?}");
        let stats = bh.stats();
        assert_eq!(
            (stats.running, stats.spawn_failed, stats.started),
            (0, 2, 0)
        );
        // The slot is free: the one slot serves the next call.
        assert!(bh.run(Command::new("true")).unwrap().status.success());
    }
}

#[test]
fn a_file_that_is_not_executable_is_an_error_not_status_126() {
    let dir = std::env::temp_dir().join(format!("bulkheads-{}-noexec", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let file = dir.join("script");
    fs::write(&file, "#!/bin/sh\necho hi\n").unwrap();
    let bh = ProcessBulkhead::new("noexec", ProcessConfig::new(1).max_open_files(64)).unwrap();
    let err = bh.run(Command::new(&file)).unwrap_err();
    assert!(err.is_start(), "{err:?}");
    let bh = ProcessBulkhead::new("noexec", ProcessConfig::new(1)).unwrap();
    assert!(bh.run(Command::new(&file)).unwrap_err().is_start());
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_full_bulkhead_rejects_and_the_queue_waits_in_order() {
    let fifo = Fifo::new("full");
    let bh = Arc::new(
        ProcessBulkhead::new(
            "full",
            ProcessConfig::new(1)
                .queue_capacity(1)
                .timeout(Duration::from_secs(60)),
        )
        .unwrap(),
    );
    let holder = {
        let bh = Arc::clone(&bh);
        let cmd = fifo.reader();
        std::thread::spawn(move || bh.run(cmd))
    };
    assert!(eventually(Duration::from_secs(10), || bh.stats().running == 1));
    let queued = {
        let bh = Arc::clone(&bh);
        std::thread::spawn(move || bh.run(sh("echo second")))
    };
    assert!(eventually(Duration::from_secs(10), || bh.stats().queued == 1));
    let err = bh.run(Command::new("true")).unwrap_err();
    assert!(err.is_rejected(), "{err:?}");
    assert_eq!(err.bulkhead(), "full");
    fifo.release();
    let first = holder.join().unwrap().unwrap();
    assert_eq!(first.stdout, b"go\n");
    assert_eq!(queued.join().unwrap().unwrap().stdout, b"second\n");
    let stats = bh.stats();
    assert_eq!(
        (stats.rejected, stats.started, stats.running, stats.queued),
        (1, 2, 0, 0)
    );
}

#[test]
fn no_queue_means_fail_fast() {
    let fifo = Fifo::new("fast");
    let bh = Arc::new(ProcessBulkhead::new("fast", ProcessConfig::new(1)).unwrap());
    let holder = {
        let bh = Arc::clone(&bh);
        let cmd = fifo.reader();
        std::thread::spawn(move || bh.run(cmd))
    };
    assert!(eventually(Duration::from_secs(10), || bh.stats().running == 1));
    let started = Instant::now();
    assert!(bh.run(Command::new("true")).unwrap_err().is_rejected());
    assert!(started.elapsed() < Duration::from_secs(1));
    fifo.release();
    holder.join().unwrap().unwrap();
}

#[test]
fn a_deadline_spent_in_the_queue_is_a_timeout_and_nothing_runs() {
    let fifo = Fifo::new("expire");
    let bh = Arc::new(
        ProcessBulkhead::new(
            "expire",
            ProcessConfig::new(1)
                .queue_capacity(1)
                .timeout(Duration::from_millis(300))
                .kill_grace(Duration::from_secs(2)),
        )
        .unwrap(),
    );
    // Holds the slot past its deadline: it ignores SIGTERM until the grace is over.
    let holder = {
        let bh = Arc::clone(&bh);
        let mut cmd = sh("trap '' TERM; cat \"$0\"");
        cmd.arg(fifo.path());
        std::thread::spawn(move || bh.run(cmd))
    };
    assert!(eventually(Duration::from_secs(10), || bh.stats().running == 1));
    let err = bh.run(Command::new("true")).unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    let held = holder.join().unwrap().unwrap();
    assert!(held.timed_out && held.killed, "{held:?}");
    let stats = bh.stats();
    assert_eq!((stats.expired, stats.started, stats.timed_out), (1, 1, 1));
}

#[test]
fn no_zombies_after_hundreds_of_runs() {
    let bh = Arc::new(
        ProcessBulkhead::new(
            "many",
            ProcessConfig::new(4)
                .queue_capacity(64)
                .timeout(Duration::from_secs(60))
                .kill_grace(Duration::from_millis(200)),
        )
        .unwrap(),
    );
    // The check itself sees a zombie: a child nobody has waited for yet.
    let mut unreaped = Command::new("true").spawn().unwrap();
    let pid = unreaped.id();
    assert!(eventually(Duration::from_secs(10), || our_zombies().contains(&pid)));
    unreaped.wait().unwrap();

    let runs = 300;
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let bh = Arc::clone(&bh);
            std::thread::spawn(move || {
                for i in 0..runs / 4 {
                    let out = match i % 3 {
                        0 => bh.run(Command::new("true")),
                        1 => bh.run(sh("echo $$; exit 3")),
                        _ => bh.run(Command::new("no-such-program-for-bulkheads")),
                    };
                    assert!(out.is_ok() || i % 3 == 2, "thread {t} run {i}: {out:?}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // A few that time out, with a grandchild each.
    let quick = ProcessBulkhead::new(
        "many-timeouts",
        ProcessConfig::new(2)
            .timeout(Duration::from_millis(50))
            .kill_grace(Duration::from_millis(100)),
    )
    .unwrap();
    for _ in 0..5 {
        assert!(quick.run(sh("sleep 100 & sleep 100")).unwrap().timed_out);
    }
    // Other tests in this binary run children too; a zombie of theirs is reaped within
    // moments. One that stays is a leak.
    assert!(
        eventually(Duration::from_secs(10), || our_zombies().is_empty()),
        "zombie children: {:?}",
        our_zombies()
    );
    let stats = bh.stats();
    assert_eq!(stats.permitted, 300);
    assert_eq!(stats.started + stats.spawn_failed, stats.permitted);
    assert_eq!(stats.started, stats.completed + stats.timed_out);
    assert_eq!(stats.exit_failures, 100);
    assert_eq!((stats.running, stats.queued), (0, 0));
}

#[test]
fn bad_configuration_names_the_bulkhead_and_the_field() {
    let cases = [
        (ProcessConfig::new(0), "max_concurrent"),
        (ProcessConfig::new(1).timeout(Duration::ZERO), "timeout"),
        (
            ProcessConfig::new(1).kill_grace(Duration::ZERO),
            "kill_grace",
        ),
        (ProcessConfig::new(1).max_output(0), "max_output"),
        (ProcessConfig::new(1).max_open_files(0), "max_open_files"),
        (ProcessConfig::new(1).cpu_time(Duration::ZERO), "cpu_time"),
        (ProcessConfig::new(1).address_space(0), "address_space"),
        (
            ProcessConfig::new(1).max_open_files(u64::MAX / 2),
            "max_open_files",
        ),
    ];
    for (config, field) in cases {
        let err = ProcessBulkhead::new("conv", config).unwrap_err();
        assert_eq!((err.bulkhead(), err.field()), ("conv", field), "{err}");
        assert!(err.to_string().contains("'conv'"), "{err}");
    }
    assert_eq!(
        ProcessBulkhead::new("", ProcessConfig::new(1))
            .unwrap_err()
            .field(),
        "name"
    );
}

#[test]
fn stats_events_and_prometheus_speak_of_a_process_kind() {
    let bh = ProcessBulkhead::new(
        "render",
        ProcessConfig::new(2).timeout(Duration::from_millis(200)),
    )
    .unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    bh.on_event(move |e| log.lock().unwrap().push(e.kind));
    bh.run(Command::new("true")).unwrap();
    bh.run(sh("sleep 100")).unwrap();
    let kinds = seen.lock().unwrap().clone();
    assert!(matches!(kinds[0], EventKind::Permitted { .. }), "{kinds:?}");
    assert!(matches!(kinds[1], EventKind::Started { .. }), "{kinds:?}");
    assert!(matches!(kinds[2], EventKind::Finished { .. }), "{kinds:?}");
    assert!(
        kinds
            .iter()
            .any(|k| matches!(k, EventKind::TimedOut { .. })),
        "{kinds:?}"
    );

    let stats = bh.stats();
    assert_eq!((stats.completed, stats.timed_out), (1, 1));
    assert_eq!(stats.run_time.histogram.count, 2);
    let text = stats.to_prometheus();
    for line in [
        "bulkhead_calls_total{bulkhead=\"render\",kind=\"process\",outcome=\"completed\"} 1\n",
        "bulkhead_calls_total{bulkhead=\"render\",kind=\"process\",outcome=\"timed_out\"} 1\n",
        "bulkhead_running{bulkhead=\"render\",kind=\"process\"} 0\n",
        "bulkhead_max_concurrent{bulkhead=\"render\",kind=\"process\"} 2\n",
        "bulkhead_run_seconds_count{bulkhead=\"render\",kind=\"process\"} 2\n",
    ] {
        assert!(text.contains(line), "no {line:?} in\n{text}");
    }
    let mut manager = ManagerStats::default();
    manager.bulkheads.push(BulkheadStats::Process(stats));
    assert_eq!(manager.process("render").map(|p| p.timed_out), Some(1));
    let table = manager.to_string();
    let row = table.lines().nth(1).unwrap();
    assert!(
        row.starts_with("render") && row.contains("process"),
        "{table}"
    );
}

#[test]
fn output_so_far_is_kept_on_timeout() {
    let bh = ProcessBulkhead::new(
        "partial",
        ProcessConfig::new(1)
            .timeout(Duration::from_millis(300))
            .kill_grace(Duration::from_millis(300)),
    )
    .unwrap();
    let out = bh.run(sh("echo before; echo oops >&2; sleep 100")).unwrap();
    assert!(out.timed_out);
    assert_eq!(out.stdout, b"before\n");
    assert_eq!(out.stderr, b"oops\n");
}

#[test]
fn the_manager_holds_process_bulkheads_like_the_other_kinds() {
    use bulkheads::{BulkheadManager, PoolConfig};

    let manager = BulkheadManager::builder()
        .pool("db", PoolConfig::new(1))
        .process(
            "convert",
            ProcessConfig::new(1).timeout(Duration::from_millis(200)),
        )
        .max_bulkheads(3)
        .build()
        .unwrap();
    let events = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = Arc::clone(&events);
    manager.on_event(move |e| {
        if e.bulkhead == "convert" && matches!(e.kind, EventKind::TimedOut { .. }) {
            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let convert = manager.process("convert");
    assert!(Arc::ptr_eq(&convert, &manager.process("convert")));
    assert!(convert.run(sh("sleep 100")).unwrap().timed_out);
    assert_eq!(events.load(std::sync::atomic::Ordering::Relaxed), 1);

    // A name not configured gets the default configuration, within the manager's cap.
    let other = manager.try_process("resize").unwrap();
    assert_eq!(other.config(), &ProcessConfig::default());
    assert_eq!(
        manager.try_process("one-too-many").unwrap_err().field(),
        "max_bulkheads"
    );
    assert!(manager.get_process("nope").is_none());

    let stats = manager.stats();
    assert_eq!(stats.process("convert").map(|p| p.timed_out), Some(1));
    let names: Vec<_> = stats.bulkheads.iter().map(BulkheadStats::name).collect();
    assert_eq!(names, ["convert", "db", "resize"]);
    let text = stats.to_prometheus();
    assert!(
        text.contains(
            "bulkhead_calls_total{bulkhead=\"convert\",kind=\"process\",outcome=\"timed_out\"} 1\n"
        ),
        "{text}"
    );
    assert!(text.contains("bulkhead_live_threads{bulkhead=\"db\",kind=\"pool\"}"));

    let err = BulkheadManager::builder()
        .process("x", ProcessConfig::new(1))
        .process("x", ProcessConfig::new(2))
        .build()
        .unwrap_err();
    assert_eq!((err.bulkhead(), err.field()), ("x", "name"));
}
