//! Loom build only: the part of `crossbeam-channel` bluegreen uses, on a loom mutex and
//! condvar (loom's own `mpsc` has no timeouts and no bounded channels).
//!
//! Disconnection is as in crossbeam: a receive on an empty channel whose senders are all
//! gone fails, a send to a dropped receiver hands the value back. Loom has no time, so
//! `recv_timeout` waits like `recv` and never times out. A zero-capacity channel behaves
//! as capacity one (bluegreen only uses those to signal by disconnecting).

use std::collections::VecDeque;

use super::loom_lock::{Condvar, Mutex};
pub(crate) use crossbeam_channel::{
    RecvError, RecvTimeoutError, SendError, TryRecvError, TrySendError,
};
use loom::sync::Arc;

struct Chan<T> {
    state: Mutex<State<T>>,
    changed: Condvar,
}

struct State<T> {
    queue: VecDeque<T>,
    capacity: Option<usize>,
    senders: usize,
    receiver: bool,
}

/// The sending half.
pub(crate) struct Sender<T>(Arc<Chan<T>>);

/// The receiving half.
pub(crate) struct Receiver<T>(Arc<Chan<T>>);

fn with_capacity<T>(capacity: Option<usize>) -> (Sender<T>, Receiver<T>) {
    let chan = Arc::new(Chan {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            capacity: capacity.map(|c| c.max(1)),
            senders: 1,
            receiver: true,
        }),
        changed: Condvar::new(),
    });
    (Sender(Arc::clone(&chan)), Receiver(chan))
}

pub(crate) fn bounded<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    with_capacity(Some(capacity))
}

pub(crate) fn unbounded<T>() -> (Sender<T>, Receiver<T>) {
    with_capacity(None)
}

impl<T> Sender<T> {
    pub(crate) fn send(&self, value: T) -> Result<(), SendError<T>> {
        let mut st = self.0.state.lock();
        loop {
            if !st.receiver {
                return Err(SendError(value));
            }
            if st.capacity.is_none_or(|c| st.queue.len() < c) {
                st.queue.push_back(value);
                self.0.changed.notify_all();
                return Ok(());
            }
            self.0.changed.wait(&mut st);
        }
    }

    pub(crate) fn is_full(&self) -> bool {
        let st = self.0.state.lock();
        st.capacity.is_some_and(|c| st.queue.len() >= c)
    }

    pub(crate) fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        let mut st = self.0.state.lock();
        if !st.receiver {
            return Err(TrySendError::Disconnected(value));
        }
        if st.capacity.is_some_and(|c| st.queue.len() >= c) {
            return Err(TrySendError::Full(value));
        }
        st.queue.push_back(value);
        self.0.changed.notify_all();
        Ok(())
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.0.state.lock().senders += 1;
        Self(Arc::clone(&self.0))
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.0.state.lock().senders -= 1;
        self.0.changed.notify_all();
    }
}

impl<T> Receiver<T> {
    pub(crate) fn recv(&self) -> Result<T, RecvError> {
        let mut st = self.0.state.lock();
        loop {
            if let Some(value) = st.queue.pop_front() {
                self.0.changed.notify_all();
                return Ok(value);
            }
            if st.senders == 0 {
                return Err(RecvError);
            }
            self.0.changed.wait(&mut st);
        }
    }

    /// Waits like [`recv`](Self::recv): loom has no time.
    pub(crate) fn recv_timeout(
        &self,
        _timeout: std::time::Duration,
    ) -> Result<T, RecvTimeoutError> {
        self.recv()
            .map_err(|RecvError| RecvTimeoutError::Disconnected)
    }

    pub(crate) fn try_recv(&self) -> Result<T, TryRecvError> {
        let mut st = self.0.state.lock();
        match st.queue.pop_front() {
            Some(value) => {
                self.0.changed.notify_all();
                Ok(value)
            }
            None if st.senders == 0 => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = T> + '_ {
        std::iter::from_fn(|| self.recv().ok())
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let unread = {
            let mut st = self.0.state.lock();
            st.receiver = false;
            std::mem::take(&mut st.queue)
        };
        self.0.changed.notify_all();
        // Dropped outside the lock: a queued value may be a model.
        drop(unread);
    }
}
