//! The hook thread: calls the application's automatic-rollback hook off the bake monitor.
//!
//! A hook is application code and may panic, hang or be slow (paging someone over the
//! network). Called on the monitor thread, a panic would end the monitor — and with it
//! every later automatic rollback — and a hang would stop it looking. So the monitor only
//! hands the record over, through a small bounded queue, to a thread of its own that calls
//! the hook inside `catch_unwind`: a panic is a [`FaultKind::HookPanicked`]; when the hook
//! is still busy with [`QUEUE`] earlier records, a new one is dropped and counted as
//! [`FaultKind::HookSkipped`] rather than waited for. The record itself is in
//! [`Status::last_auto_rollback`](crate::Status::last_auto_rollback) either way.

use crate::sync::Arc;
use crate::sync::thread::JoinHandle;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use crate::sync::channel::{Receiver, Sender, TrySendError};

use super::builder::RollbackHook;
use super::faults::{FaultKind, FaultLog, panic_text};
use crate::traffic::bake::AutoRollback;

/// Records that may wait for a busy hook.
const QUEUE: usize = 16;

pub(super) struct Hooks {
    tx: Option<Sender<AutoRollback>>,
    handle: Option<JoinHandle<()>>,
    exited: Receiver<()>,
    faults: Arc<FaultLog>,
}

impl Hooks {
    pub(super) fn start(hook: RollbackHook, faults: Arc<FaultLog>) -> std::io::Result<Self> {
        let (tx, rx) = crate::sync::channel::bounded::<AutoRollback>(QUEUE);
        let (alive, exited) = crate::sync::channel::bounded::<()>(0);
        let f = Arc::clone(&faults);
        let handle = crate::sync::thread::Builder::new()
            .name("bluegreen-hooks".to_owned())
            .spawn(move || {
                let _alive = alive;
                for record in rx.iter() {
                    if let Err(payload) = catch_unwind(AssertUnwindSafe(|| hook(&record))) {
                        f.record(
                            FaultKind::HookPanicked,
                            Some(&record.from),
                            panic_text(payload.as_ref()),
                        );
                    }
                }
            })?;
        Ok(Self {
            tx: Some(tx),
            handle: Some(handle),
            exited,
            faults,
        })
    }

    /// Hands `record` to the hook thread; never waits.
    pub(super) fn notify(&self, record: &AutoRollback) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(record.clone()) {
            Ok(()) => {}
            Err(TrySendError::Full(r)) => self.faults.record(
                FaultKind::HookSkipped,
                Some(&r.from),
                format!("the hook is still busy with {QUEUE} earlier automatic rollbacks"),
            ),
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

impl Hooks {
    /// Ends the hook thread, waiting for it until `deadline` (then it is left behind).
    pub(super) fn shutdown(&mut self, deadline: Instant) {
        drop(self.tx.take());
        let Some(handle) = self.handle.take() else {
            return;
        };
        // The deployment's last owner may be the hook itself, dropping it on this thread.
        if handle.thread().id() == crate::sync::thread::current().id() {
            return;
        }
        match self
            .exited
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            Err(crate::sync::channel::RecvTimeoutError::Timeout) => {
                tracing::error!(target: "bluegreen",
                    "automatic-rollback hook still running at shutdown; left behind");
            }
            _ => {
                let _ = handle.join();
            }
        }
    }
}

impl Drop for Hooks {
    fn drop(&mut self) {
        // `Inner::drop` has normally shut it down with the deployment's deadline already.
        self.shutdown(Instant::now());
    }
}
