//! The three downstreams: real HTTP servers on loopback, each with an adjustable latency.
//!
//! A server does not hold a thread per slow request. An acceptor thread takes each request
//! from tiny_http and hands it, with the moment it is due, to a responder thread that answers
//! requests when they fall due. So a "sick" server keeps every request waiting for its full
//! latency however many arrive — as a real overloaded service would — while this process
//! stays at two threads per server.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use tiny_http::{Request, Response, Server};

/// How often the acceptor looks at the stop flag while no request comes in.
const ACCEPT_POLL: Duration = Duration::from_millis(50);

/// One downstream service listening on `127.0.0.1` at an ephemeral port.
pub struct Downstream {
    name: &'static str,
    url: String,
    latency_us: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    server: Arc<Server>,
    threads: Vec<JoinHandle<()>>,
}

impl Downstream {
    /// Starts a server whose every answer takes `latency`.
    pub fn start(
        name: &'static str,
        latency: Duration,
    ) -> Result<Self, Box<dyn std::error::Error>> {
        // Loopback only: nothing outside this machine can reach it or is reached by it.
        let server = Arc::new(Server::http("127.0.0.1:0").map_err(|e| e.to_string())?);
        let port = server
            .server_addr()
            .to_ip()
            .ok_or("tiny_http did not bind an IP address")?
            .port();
        let latency_us = Arc::new(AtomicU64::new(micros(latency)));
        let stop = Arc::new(AtomicBool::new(false));
        let (due_tx, due_rx) = crossbeam_channel::unbounded::<Due>();

        let acceptor = {
            let server = Arc::clone(&server);
            let latency_us = Arc::clone(&latency_us);
            let stop = Arc::clone(&stop);
            thread::Builder::new()
                .name(format!("{name}-accept"))
                .spawn(move || {
                    let mut seq = 0_u64;
                    while !stop.load(Ordering::Relaxed) {
                        match server.recv_timeout(ACCEPT_POLL) {
                            Ok(Some(request)) => {
                                let delay =
                                    Duration::from_micros(latency_us.load(Ordering::Relaxed));
                                seq += 1;
                                let due = Due {
                                    at: Instant::now() + delay,
                                    seq,
                                    request,
                                };
                                if due_tx.send(due).is_err() {
                                    return;
                                }
                            }
                            Ok(None) => {}
                            Err(_) => return,
                        }
                    }
                })?
        };
        let responder = thread::Builder::new()
            .name(format!("{name}-respond"))
            .spawn(move || respond_when_due(name, &due_rx))?;

        Ok(Self {
            name,
            url: format!("http://127.0.0.1:{port}"),
            latency_us,
            stop,
            server,
            threads: vec![acceptor, responder],
        })
    }

    /// The base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Changes how long each answer takes from now on (requests already waiting keep theirs).
    pub fn set_latency(&self, latency: Duration) {
        self.latency_us.store(micros(latency), Ordering::Relaxed);
    }
}

impl Drop for Downstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.server.unblock();
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                eprintln!("{}: a server thread panicked", self.name);
            }
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// A request and the moment its answer is due.
struct Due {
    at: Instant,
    seq: u64,
    request: Request,
}

// Ordered so that `BinaryHeap` (a max-heap) pops the earliest due first; `seq` keeps
// requests due at the same instant in arrival order.
impl Ord for Due {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        self.seq == other.seq
    }
}
impl Eq for Due {}

/// Answers each request when it falls due. Ends when the acceptor is gone; requests still
/// waiting then are dropped, which closes their connections.
fn respond_when_due(name: &'static str, incoming: &Receiver<Due>) {
    let mut waiting = BinaryHeap::new();
    loop {
        let now = Instant::now();
        while waiting.peek().is_some_and(|due: &Due| due.at <= now) {
            if let Some(due) = waiting.pop() {
                answer(name, due.request);
            }
        }
        let next = match waiting.peek() {
            Some(due) => incoming.recv_deadline(due.at),
            None => incoming.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match next {
            Ok(due) => waiting.push(due),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

fn answer(name: &'static str, request: Request) {
    let body = match name {
        "inventory" => "in_stock=1",
        "payment" => "charged=1",
        _ => "queued=1",
    };
    // The caller may have given up and closed the connection; that is its business.
    let _ = request.respond(Response::from_string(body));
}
