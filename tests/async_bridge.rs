//! `TaskHandle` as a `Future`: a bounded, named, fail-fast `spawn_blocking` for async code,
//! with no runtime behind it.
//!
//! The contract is tokio's `JoinHandle` (await the outcome; dropping detaches) and the
//! `Future` trait's own rules (only the latest waker is woken; a wake means "poll me, there
//! is progress"), checked first with counting wakers and no runtime at all, then under
//! tokio's current-thread and multi-thread runtimes, `futures::executor` and `pollster`.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use bulkheads::{BulkheadError, PoolConfig, TaskHandle, ThreadPoolBulkhead};

mod common;
use common::{Gate, OpenOnDrop, wait_until};

/// How long a test waits for something that should happen at once. Only a bug gets near it.
const LONG: Duration = Duration::from_secs(10);

/// A waker that counts its wakes.
#[derive(Default)]
struct Counting(AtomicUsize);

impl Wake for Counting {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl Counting {
    fn new() -> (Arc<Self>, Waker) {
        let c = Arc::new(Self::default());
        let waker = Waker::from(Arc::clone(&c));
        (c, waker)
    }
    fn wakes(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

fn poll<T: Send + 'static>(
    handle: &mut TaskHandle<T>,
    waker: &Waker,
) -> Poll<Result<T, BulkheadError>> {
    Pin::new(handle).poll(&mut Context::from_waker(waker))
}

fn gated(pool: &ThreadPoolBulkhead, gate: &Arc<Gate>, value: u32) -> TaskHandle<u32> {
    let gate = Arc::clone(gate);
    pool.submit(move || {
        gate.wait();
        value
    })
    .expect("admitted")
}

fn rt_current() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime")
}

fn rt_multi() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("a runtime")
}

#[test]
fn a_task_handle_is_a_send_future_of_the_same_outcome_as_join() {
    fn is_send_future<F: Future<Output = Result<u32, BulkheadError>> + Send + 'static>(_: &F) {}
    let pool = ThreadPoolBulkhead::new("sendable", PoolConfig::new(1)).unwrap();
    let handle = pool.submit(|| 5_u32).unwrap();
    is_send_future(&handle);
    assert_eq!(pollster::block_on(handle).unwrap(), 5);
}

#[test]
fn a_pending_poll_is_woken_once_after_the_outcome_is_in_then_ready() {
    let pool = ThreadPoolBulkhead::new("wake-once", PoolConfig::new(1)).unwrap();
    let gate = Gate::new();
    let _release = OpenOnDrop(Arc::clone(&gate));
    let mut handle = gated(&pool, &gate, 7);
    let (counter, waker) = Counting::new();

    assert!(poll(&mut handle, &waker).is_pending());
    assert!(
        poll(&mut handle, &waker).is_pending(),
        "the same waker, kept once"
    );
    assert_eq!(counter.wakes(), 0, "nothing happened yet");

    gate.open();
    wait_until(LONG, "the worker wakes the caller", || counter.wakes() > 0);
    match poll(&mut handle, &waker) {
        Poll::Ready(Ok(7)) => {}
        other => panic!("woken, so ready with 7: {other:?}"),
    }
    assert_eq!(counter.wakes(), 1, "woken exactly once");
    assert_eq!(pool.stats().completed, 1);
}

#[test]
fn only_the_waker_of_the_latest_poll_is_woken() {
    // The handle moves from one async task to another (a `select!` that lost, a task that
    // passed it on): the first task's waker must not be woken for the second's outcome.
    let pool = ThreadPoolBulkhead::new("moved", PoolConfig::new(1)).unwrap();
    let gate = Gate::new();
    let _release = OpenOnDrop(Arc::clone(&gate));
    let mut handle = gated(&pool, &gate, 1);
    let (first, first_waker) = Counting::new();
    let (second, second_waker) = Counting::new();

    assert!(poll(&mut handle, &first_waker).is_pending());
    assert!(poll(&mut handle, &second_waker).is_pending());
    gate.open();
    wait_until(LONG, "the latest waker is woken", || second.wakes() == 1);
    assert!(matches!(
        poll(&mut handle, &second_waker),
        Poll::Ready(Ok(1))
    ));
    assert_eq!(first.wakes(), 0, "the replaced waker was woken");
}

/// A waker that, when woken, polls the handle it waits on — from the worker's thread,
/// inside `wake`. It finds the outcome (never a spurious wake), and it can only do so if
/// the worker holds no lock of the task while it wakes (it would deadlock otherwise).
struct PollsOnWake {
    handle: Mutex<Option<TaskHandle<u32>>>,
    seen: mpsc::Sender<Option<Result<u32, BulkheadError>>>,
}

impl Wake for PollsOnWake {
    fn wake(self: Arc<Self>) {
        let mut slot = self.handle.lock().unwrap();
        let handle = slot.as_mut().expect("woken once");
        let waker = Waker::from(Arc::new(Counting::default()));
        let outcome = match poll(handle, &waker) {
            Poll::Ready(outcome) => Some(outcome),
            Poll::Pending => None,
        };
        slot.take();
        let _ = self.seen.send(outcome);
    }
}

#[test]
fn the_wake_comes_after_the_outcome_is_published_and_with_no_lock_held() {
    let pool = ThreadPoolBulkhead::new("re-entrant", PoolConfig::new(2)).unwrap();
    // Many tasks, to meet the worker at every point of its delivery.
    for i in 0..200_u32 {
        let (tx, rx) = mpsc::channel();
        let mut handle = pool.submit(move || i).unwrap();
        let waker_state = Arc::new(PollsOnWake {
            handle: Mutex::new(None),
            seen: tx,
        });
        let waker = Waker::from(Arc::clone(&waker_state));
        // Poll under the waker's own lock so that a wake cannot find the slot empty.
        let mut slot = waker_state.handle.lock().unwrap();
        match poll(&mut handle, &waker) {
            Poll::Ready(outcome) => {
                assert_eq!(outcome.unwrap(), i);
                continue;
            }
            Poll::Pending => *slot = Some(handle),
        }
        drop(slot);
        let seen = rx
            .recv_timeout(LONG)
            .expect("woken within the bound (a lock held across the wake would hang here)");
        assert_eq!(
            seen.expect("a wake with no outcome behind it").unwrap(),
            i,
            "task {i}"
        );
    }
    assert_eq!(pool.stats().completed, 200);
}

#[test]
fn dropping_a_polled_handle_detaches_the_task_which_still_runs_in_its_slot() {
    let pool = ThreadPoolBulkhead::new("detached", PoolConfig::new(1).queue_capacity(0)).unwrap();
    let gate = Gate::new();
    let _release = OpenOnDrop(Arc::clone(&gate));
    let ran = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&ran);
    let g = Arc::clone(&gate);
    let mut handle = pool
        .submit(move || {
            g.wait();
            flag.store(true, Ordering::SeqCst);
        })
        .unwrap();
    let (counter, waker) = Counting::new();
    assert!(poll(&mut handle, &waker).is_pending());
    drop(handle);

    // The slot is still taken: the compartment is full until the task ends.
    assert!(pool.submit(|| ()).unwrap_err().is_rejected());
    gate.open();
    wait_until(LONG, "the detached task ends", || {
        pool.stats().completed == 1
    });
    assert!(ran.load(Ordering::SeqCst));
    let s = pool.stats();
    assert_eq!((s.running, s.queued), (0, 0));
    assert_eq!(counter.wakes(), 0, "nobody waits on a detached task");
}

#[test]
fn a_panic_and_a_cancellation_come_back_through_await() {
    let pool = ThreadPoolBulkhead::new("errors", PoolConfig::new(1).queue_capacity(1)).unwrap();
    let boom = pool.submit(|| -> u32 { panic!("boom") }).unwrap();
    let err = futures::executor::block_on(boom).unwrap_err();
    assert!(err.is_panicked(), "{err}");
    assert!(err.to_string().contains("boom"), "{err}");

    let gate = Gate::new();
    let _release = OpenOnDrop(Arc::clone(&gate));
    let busy = gated(&pool, &gate, 1);
    let queued = pool.submit(|| 2_u32).unwrap();
    assert!(queued.cancel());
    assert!(
        futures::executor::block_on(queued)
            .unwrap_err()
            .is_cancelled()
    );
    gate.open();
    assert_eq!(futures::executor::block_on(busy).unwrap(), 1);
}

#[test]
fn shutdown_now_wakes_an_awaited_queued_task_with_shutdown() {
    let pool = ThreadPoolBulkhead::new("discarded", PoolConfig::new(1).queue_capacity(1)).unwrap();
    let gate = Gate::new();
    let _release = OpenOnDrop(Arc::clone(&gate));
    // Started, not only assigned: `running` counts a task from the moment a worker is
    // assigned to it, while it may still be in the queue that `shutdown_now` empties.
    let started = Arc::new(AtomicBool::new(false));
    let busy = {
        let (gate, started) = (Arc::clone(&gate), Arc::clone(&started));
        pool.submit(move || {
            started.store(true, Ordering::SeqCst);
            gate.wait();
            1_u32
        })
        .unwrap()
    };
    wait_until(LONG, "the first task starts", || {
        started.load(Ordering::SeqCst)
    });
    let mut queued = pool.submit(|| 2_u32).unwrap();
    let (counter, waker) = Counting::new();
    assert!(poll(&mut queued, &waker).is_pending());

    pool.shutdown_now();
    wait_until(LONG, "the discard wakes the caller", || {
        counter.wakes() == 1
    });
    match poll(&mut queued, &waker) {
        Poll::Ready(Err(e)) => assert!(e.is_shutdown(), "{e}"),
        other => panic!("expected Shutdown: {other:?}"),
    }
    gate.open();
    assert_eq!(pollster::block_on(busy).unwrap(), 1);
}

#[test]
#[should_panic(expected = "polled after it returned its outcome")]
fn polling_past_the_outcome_is_a_bug_that_panics_with_the_bulkhead_name() {
    let pool = ThreadPoolBulkhead::new("fused", PoolConfig::new(1)).unwrap();
    let mut handle = pool.submit(|| 1_u32).unwrap();
    let (_, waker) = Counting::new();
    wait_until(LONG, "the task ends", || handle.is_finished());
    assert!(poll(&mut handle, &waker).is_ready());
    let _ = poll(&mut handle, &waker);
}

#[test]
fn a_current_thread_runtime_awaits_many_tasks_and_a_full_pool_rejects_at_once() {
    let pool =
        Arc::new(ThreadPoolBulkhead::new("current", PoolConfig::new(2).queue_capacity(2)).unwrap());
    let rt = rt_current();
    let sum = rt.block_on(async {
        let mut sum = 0;
        for round in 0..50_u64 {
            let a = pool.submit(move || round).unwrap();
            let b = pool.submit(move || round * 2).unwrap();
            sum += a.await.unwrap() + b.await.unwrap();
        }
        sum
    });
    assert_eq!(sum, (0..50).map(|r| r * 3).sum::<u64>());

    // Full: 2 running + 2 queued; the fifth is refused without waiting.
    let gate = Gate::new();
    let _release = OpenOnDrop(Arc::clone(&gate));
    let held: Vec<_> = (0..4).map(|i| gated(&pool, &gate, i)).collect();
    let refused = rt.block_on(async { pool.submit(|| 9_u32).map(|_| ()) });
    let err = refused.unwrap_err();
    assert!(err.is_rejected(), "{err}");
    assert!(err.to_string().contains("current"), "{err}");
    gate.open();
    let outcomes = rt.block_on(async {
        let mut v = Vec::new();
        for h in held {
            v.push(h.await.unwrap());
        }
        v
    });
    assert_eq!(outcomes, [0, 1, 2, 3]);
}

#[test]
fn a_multi_thread_runtime_holds_handles_in_spawned_tasks() {
    let pool =
        Arc::new(ThreadPoolBulkhead::new("multi", PoolConfig::new(4).queue_capacity(64)).unwrap());
    let rt = rt_multi();
    let total = rt.block_on(async {
        let tasks: Vec<_> = (0..64_u64)
            .map(|i| {
                let pool = Arc::clone(&pool);
                tokio::spawn(async move { pool.submit(move || i * i)?.await })
            })
            .collect();
        let mut total = 0;
        for t in tasks {
            total += t.await.expect("the tokio task").expect("the bulkhead task");
        }
        total
    });
    assert_eq!(total, (0..64).map(|i| i * i).sum::<u64>());
    assert_eq!(pool.stats().completed, 64);
}

#[test]
fn a_runtime_timeout_stops_the_waiting_and_the_task_keeps_its_slot_until_it_ends() {
    let pool = ThreadPoolBulkhead::new("hung", PoolConfig::new(1).queue_capacity(0)).unwrap();
    let gate = Gate::new();
    let _release = OpenOnDrop(Arc::clone(&gate));
    let rt = rt_multi();
    let handle = gated(&pool, &gate, 3);
    let waited =
        rt.block_on(async { tokio::time::timeout(Duration::from_millis(20), handle).await });
    assert!(waited.is_err(), "the hung task cannot have finished");
    // The dropped handle detached the task; it still holds the pool's one thread.
    assert_eq!(pool.stats().running, 1);
    assert!(pool.submit(|| 0_u32).unwrap_err().is_rejected());
    gate.open();
    wait_until(LONG, "the detached task ends", || {
        pool.stats().completed == 1
    });
    let again = rt.block_on(async { pool.submit(|| 4_u32).unwrap().await });
    assert_eq!(again.unwrap(), 4);
}
