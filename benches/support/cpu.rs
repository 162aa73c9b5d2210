//! The process's CPU time, per thread, from `/proc/self/task/*/schedstat` (Linux; empty
//! elsewhere): what a trickle of calls costs in CPU rather than in wall time.

use std::collections::HashMap;
use std::fs;

/// CPU time of each live thread of the process so far, in nanoseconds, by thread id.
pub fn thread_cpu_ns() -> HashMap<String, u64> {
    let mut times = HashMap::new();
    if let Ok(tasks) = fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            if let Ok(stat) = fs::read_to_string(task.path().join("schedstat")) {
                let ns = stat
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
                times.insert(task.file_name().to_string_lossy().into_owned(), ns);
            }
        }
    }
    times
}

/// CPU time the process spent since `before`: threads that started since count whole,
/// threads that exited since are left out.
pub fn cpu_ns_since(before: &HashMap<String, u64>) -> u64 {
    thread_cpu_ns()
        .iter()
        .map(|(tid, &now)| now.saturating_sub(before.get(tid).copied().unwrap_or(0)))
        .sum()
}

/// CPU time of the calling thread so far, in nanoseconds (0 where schedstat is missing).
pub fn this_thread_cpu_ns() -> u64 {
    fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The whole process's CPU time while `callers` threads, released together, make `iters`
/// calls of `call` each: the callers' own time, read by each before it exits (an exited
/// thread leaves `/proc`), plus what every other thread (workers) spent meanwhile.
pub fn callers_cpu_ns(
    callers: usize,
    iters: u64,
    call: std::sync::Arc<dyn Fn() + Send + Sync>,
) -> u64 {
    use std::sync::{Arc, Barrier};
    let barrier = Arc::new(Barrier::new(callers + 1));
    let before = thread_cpu_ns();
    let handles: Vec<_> = (0..callers)
        .map(|_| {
            let (barrier, call) = (Arc::clone(&barrier), Arc::clone(&call));
            std::thread::spawn(move || {
                barrier.wait();
                let start = this_thread_cpu_ns();
                for _ in 0..iters {
                    call();
                }
                this_thread_cpu_ns() - start
            })
        })
        .collect();
    barrier.wait();
    let callers_ns: u64 = handles.into_iter().map(|h| h.join().expect("caller")).sum();
    // The callers have exited, so this counts the long-lived threads only.
    callers_ns + cpu_ns_since(&before)
}

/// Threads that keep every core they get busy until dropped: a host whose CPUs are taken.
pub struct Hogs {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Hogs {
    pub fn start(n: usize) -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let threads = (0..n)
            .map(|_| {
                let stop = std::sync::Arc::clone(&stop);
                std::thread::spawn(move || {
                    let mut x = 0_u64;
                    while !stop.load(Ordering::Relaxed) {
                        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                    }
                })
            })
            .collect();
        Self { stop, threads }
    }
}

impl Drop for Hogs {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
