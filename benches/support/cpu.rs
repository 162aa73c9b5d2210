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
