//! Feature `tracing`: the caller's span travels to the worker; rejections cannot flood.
#![cfg(feature = "tracing")]

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use bulkheads::{PoolConfig, ThreadPoolBulkhead};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// A minimal subscriber: remembers each span's name and parent, and for each event the
/// chain of span names it happened in.
#[derive(Default)]
struct Recorder {
    next: AtomicU64,
    spans: Mutex<Vec<(String, Option<u64>)>>,
    events: Mutex<Vec<(String, Vec<String>)>>,
}

thread_local! {
    static STACK: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

struct Message(String);

impl tracing::field::Visit for Message {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl Recorder {
    fn chain(&self, mut id: Option<u64>) -> Vec<String> {
        let spans = self.spans.lock().unwrap();
        let mut names = Vec::new();
        while let Some(i) = id {
            let (name, parent) = &spans[i as usize - 1];
            names.push(name.clone());
            id = *parent;
        }
        names
    }
}

/// The subscriber handed to tracing; the test keeps another handle to read the records.
#[derive(Clone)]
struct Handle(Arc<Recorder>);

impl Subscriber for Handle {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let parent = if let Some(p) = attrs.parent() {
            Some(p.into_u64())
        } else if attrs.is_contextual() {
            STACK.with(|s| s.borrow().last().copied())
        } else {
            None
        };
        let id = self.0.next.fetch_add(1, Ordering::SeqCst) + 1;
        self.0
            .spans
            .lock()
            .unwrap()
            .push((attrs.metadata().name().to_owned(), parent));
        Id::from_u64(id)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut message = Message(String::new());
        event.record(&mut message);
        let chain = self.0.chain(STACK.with(|s| s.borrow().last().copied()));
        self.0.events.lock().unwrap().push((message.0, chain));
    }
    fn enter(&self, id: &Id) {
        STACK.with(|s| s.borrow_mut().push(id.into_u64()));
    }
    fn exit(&self, _: &Id) {
        STACK.with(|s| s.borrow_mut().pop());
    }
}

#[test]
fn the_callers_span_is_carried_into_the_worker_and_rejections_are_rate_limited() {
    let recorder = Arc::new(Recorder::default());
    // Global: the worker thread must see the same subscriber as the caller.
    tracing::subscriber::set_global_default(Handle(Arc::clone(&recorder)))
        .expect("the only subscriber in this test binary");

    let pool = ThreadPoolBulkhead::new("inventory", PoolConfig::new(1)).unwrap();
    let request = tracing::info_span!("request");
    request.in_scope(|| {
        pool.execute(|| tracing::info!("checking stock")).unwrap();
    });
    let events = recorder.events.lock().unwrap().clone();
    let (_, chain) = events
        .iter()
        .find(|(m, _)| m == "checking stock")
        .expect("the task's event was recorded");
    assert_eq!(chain, &["bulkhead_call", "request"], "{events:?}");

    // A thousand rejections in well under a second: one log line, counting them all.
    let (release, blocked) = mpsc::channel::<()>();
    let busy = pool.submit(move || blocked.recv().ok()).unwrap();
    for _ in 0..1000 {
        assert!(pool.execute(|| ()).unwrap_err().is_rejected());
    }
    release.send(()).unwrap();
    busy.join().unwrap();
    let lines = recorder
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|(m, _)| m.starts_with("bulkhead full"))
        .count();
    assert_eq!(lines, 1);
}
