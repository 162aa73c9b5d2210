//! The naive form of the bulkhead design, the baseline the library should approach: std
//! threads reading boxed jobs from a crossbeam `bounded` queue, each result sent back through
//! its own `bounded(1)` channel. Shared by `benches/overhead.rs` and `examples/overhead.rs`,
//! with the driver that times several callers at once.

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, bounded};

type Job = Box<dyn FnOnce() + Send>;

/// A fixed pool of `threads` workers behind a bounded queue.
pub struct NaivePool {
    jobs: Option<Sender<Job>>,
    workers: Vec<thread::JoinHandle<()>>,
}

impl NaivePool {
    /// Starts `threads` workers with a queue of `queue` slots (at least one per worker).
    pub fn new(threads: usize, queue: usize) -> Self {
        let (jobs, rx) = bounded::<Job>(queue.max(threads));
        let workers = (0..threads)
            .map(|_| {
                let rx = rx.clone();
                thread::spawn(move || {
                    while let Ok(job) = rx.recv() {
                        job();
                    }
                })
            })
            .collect();
        Self {
            jobs: Some(jobs),
            workers,
        }
    }

    /// Runs `f` on a worker and waits for its result.
    pub fn execute<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = bounded(1);
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        self.jobs
            .as_ref()
            .expect("open")
            .send(job)
            .expect("workers alive");
        rx.recv().expect("a result")
    }
}

impl Drop for NaivePool {
    fn drop(&mut self) {
        self.jobs.take();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

/// Time for `callers` threads, released together, to make `iters` calls of `call` each.
pub fn run_callers(callers: usize, iters: u64, call: Arc<dyn Fn() + Send + Sync>) -> Duration {
    let barrier = Arc::new(Barrier::new(callers + 1));
    let handles: Vec<_> = (0..callers)
        .map(|_| {
            let (barrier, call) = (Arc::clone(&barrier), Arc::clone(&call));
            thread::spawn(move || {
                barrier.wait();
                for _ in 0..iters {
                    call();
                }
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    for h in handles {
        h.join().expect("caller");
    }
    start.elapsed()
}
