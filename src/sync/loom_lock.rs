//! Loom build only: `parking_lot`-shaped locks on loom's, and the swap cell as a loom
//! `Mutex<Arc<T>>` with the part of arc-swap's API bluegreen uses.

use std::ops::{Deref, DerefMut};
use std::time::Instant;

/// A loom mutex with `parking_lot`'s face: `lock()` returns the guard (no poisoning).
#[derive(Debug, Default)]
pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

impl<T> Mutex<T> {
    pub(crate) fn new(value: T) -> Self {
        Self(loom::sync::Mutex::new(value))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        MutexGuard(Some(self.0.lock().unwrap_or_else(|e| e.into_inner())))
    }

    pub(crate) fn get_mut(&mut self) -> &mut T {
        self.0.get_mut().unwrap_or_else(|e| e.into_inner())
    }
}

/// Held lock; `Option` only so that [`Condvar`] can hand it to loom's by value.
pub(crate) struct MutexGuard<'a, T>(Option<loom::sync::MutexGuard<'a, T>>);

impl<T> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.0
            .as_ref()
            .expect("guard present outside a condvar wait")
    }
}

impl<T> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.0
            .as_mut()
            .expect("guard present outside a condvar wait")
    }
}

/// A loom condvar with `parking_lot`'s face. Loom has no time: `wait_until` waits for a
/// notification whatever the deadline, and never reports a timeout.
#[derive(Debug, Default)]
pub(crate) struct Condvar(loom::sync::Condvar);

/// Always "not timed out" (see [`Condvar`]).
pub(crate) struct WaitTimeoutResult;

impl WaitTimeoutResult {
    pub(crate) fn timed_out(&self) -> bool {
        false
    }
}

impl Condvar {
    pub(crate) fn new() -> Self {
        Self(loom::sync::Condvar::new())
    }

    pub(crate) fn wait<T>(&self, guard: &mut MutexGuard<'_, T>) {
        let held = guard.0.take().expect("guard present before a condvar wait");
        guard.0 = Some(self.0.wait(held).unwrap_or_else(|e| e.into_inner()));
    }

    pub(crate) fn wait_until<T>(
        &self,
        guard: &mut MutexGuard<'_, T>,
        _deadline: Instant,
    ) -> WaitTimeoutResult {
        self.wait(guard);
        WaitTimeoutResult
    }

    pub(crate) fn notify_all(&self) {
        self.0.notify_all();
    }
}

/// The swap cell: `ArcSwap` / `ArcSwapOption` as a loom `Mutex<Arc<T>>`.
pub(crate) struct ArcSwapAny<T>(Mutex<T>);

/// `arc_swap::ArcSwap<U>`.
pub(crate) type ArcSwap<U> = ArcSwapAny<loom::sync::Arc<U>>;
/// `arc_swap::ArcSwapOption<U>`.
pub(crate) type ArcSwapOption<U> = ArcSwapAny<Option<loom::sync::Arc<U>>>;

/// A loaded value: here a real reference (a clone) from the start.
pub(crate) struct Guard<T>(T);

impl<T> Deref for Guard<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Clone> ArcSwapAny<T> {
    pub(crate) fn new(value: T) -> Self {
        Self(Mutex::new(value))
    }

    pub(crate) fn load(&self) -> Guard<T> {
        Guard(self.0.lock().clone())
    }

    pub(crate) fn load_full(&self) -> T {
        self.0.lock().clone()
    }

    pub(crate) fn swap(&self, value: T) -> T {
        std::mem::replace(&mut *self.0.lock(), value)
    }

    pub(crate) fn store(&self, value: T) {
        drop(self.swap(value));
    }
}

impl<U> ArcSwapAny<Option<loom::sync::Arc<U>>> {
    pub(crate) fn empty() -> Self {
        Self::new(None)
    }
}
