//! The child's stdout and stderr, each drained by a thread of its own.
//!
//! One thread per pipe, so a child that fills stderr while the parent waits on stdout (or
//! the other way round) never blocks: both pipes are always being read. Each thread keeps
//! at most `max_output` bytes and reads on past it, discarding, so the child never stalls
//! on a full pipe. The bytes live in a shared [`Capture`], not in the thread's result: a
//! grandchild that escaped the process group can hold a pipe open for ever, and `run` then
//! takes what was read so far and leaves the thread behind (it ends when the pipe closes).

use std::io::{self, Read};
use std::sync::mpsc::Sender;
use std::thread;

use crate::sync::Arc;
use crate::sync::plain::Mutex;

/// What one pipe produced so far.
#[derive(Debug, Default)]
pub(crate) struct Capture {
    inner: Mutex<Captured>,
}

#[derive(Debug, Default)]
struct Captured {
    bytes: Vec<u8>,
    truncated: bool,
}

impl Capture {
    /// Takes the bytes read so far and whether any were discarded.
    pub(crate) fn take(&self) -> (Vec<u8>, bool) {
        let mut c = self.inner.lock();
        (std::mem::take(&mut c.bytes), c.truncated)
    }
}

/// Starts a thread draining `pipe` into a new [`Capture`], keeping at most `max` bytes,
/// and sending `closed` on `done` at the end of the pipe (or on a read error, which ends
/// the capture the same way).
pub(crate) fn drain<R, E>(
    name: String,
    mut pipe: R,
    max: usize,
    done: Sender<E>,
    closed: E,
) -> io::Result<Arc<Capture>>
where
    R: Read + Send + 'static,
    E: Send + 'static,
{
    let capture = Arc::new(Capture::default());
    let shared = Arc::clone(&capture);
    thread::Builder::new().name(name).spawn(move || {
        // 64 KiB: the default pipe size on Linux, so one read usually empties the pipe.
        let mut buf = vec![0; 64 * 1024];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let mut c = shared.inner.lock();
                    let room = max.saturating_sub(c.bytes.len());
                    let keep = room.min(n);
                    c.bytes.extend_from_slice(&buf[..keep]);
                    if keep < n {
                        c.truncated = true;
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        // The receiver is gone when `run` stopped waiting for this pipe; nothing to tell.
        let _ = done.send(closed);
    })?;
    Ok(capture)
}
