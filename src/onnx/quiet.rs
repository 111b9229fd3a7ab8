//! Catching a panic that is an error in disguise without letting the panic hook see it.
//!
//! ort's lazy loader (`load-dynamic`) reports a missing or foreign ONNX Runtime library by
//! panicking. bluegreen catches that panic and returns [`OnnxError`](super::OnnxError)
//! instead; but the panic hook runs *before* unwinding starts, so with a plain
//! `catch_unwind` the default hook prints `thread '…' panicked at …` to stderr and an
//! application's hook (crash reporter, alerting) fires for something that is no crash.
//!
//! [`catch_quietly`] installs, for the duration of one call, a hook that ignores panics of
//! **the calling thread only** (a thread-local flag) and hands every other thread's panic
//! to the hook that was installed before; afterwards it puts that hook back.
//!
//! # Trade-off
//!
//! std has no atomic "replace the hook" (`update_hook` is unstable): taking the hook
//! installs the default one until the next `set_hook`. So, during the few instructions
//! between `take_hook` and `set_hook` — once when the silencer goes in, once when the
//! previous hook comes back — a panic on *another* thread is reported by std's default
//! hook (printed to stderr) instead of the application's. It is never lost, and never
//! silenced: only the calling thread's panics are ignored. The silencer is used on the
//! one path where ort may panic (creating the environment, which happens once per process
//! when it succeeds, and once per attempt while it fails), and bluegreen's own calls are
//! serialized by a lock. If other code replaces the hook while the silencer is installed,
//! its hook is left in place (the silencer inside it stays inert: the flag is only ever
//! set around bluegreen's guarded call). The alternative — checking everything ort would
//! panic on before calling it — needs `dlopen`, which is `unsafe` and would duplicate
//! ort's library search; bluegreen does make the checks it can without it (see
//! `check_dylib_path` in `runtime.rs`), so the common mistakes never reach ort at all.

use std::any::Any;
use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe, PanicHookInfo};
use std::sync::Arc;

use parking_lot::Mutex;

type Hook = Box<dyn Fn(&PanicHookInfo<'_>) + Sync + Send + 'static>;

thread_local! {
    /// Set while this thread runs a [`catch_quietly`] call.
    static SILENCED: Cell<bool> = const { Cell::new(false) };
}

/// Serializes bluegreen's own hook swaps.
static SWAP: Mutex<()> = Mutex::new(());

/// Runs `f`, catching a panic like `catch_unwind` — without the panic hook seeing panics
/// of this thread meanwhile. Other threads' panics reach the previous hook as usual (see
/// the module docs for the two short windows where they reach std's default hook).
pub(super) fn catch_quietly<T>(f: impl FnOnce() -> T) -> Result<T, Box<dyn Any + Send>> {
    // `take_hook`/`set_hook` panic on a panicking thread (e.g. a model loaded in a Drop
    // during unwinding): there, fall back to a plain catch.
    if std::thread::panicking() || SILENCED.with(Cell::get) {
        return panic::catch_unwind(AssertUnwindSafe(f));
    }
    let _serial = SWAP.lock();
    let previous: Arc<Hook> = Arc::new(panic::take_hook());
    let delegate = Arc::clone(&previous);
    let silencer: Hook = Box::new(move |info| {
        if !SILENCED.with(Cell::get) {
            delegate(info);
        }
    });
    let silencer_at = std::ptr::from_ref(&*silencer).cast::<()>();
    panic::set_hook(silencer);

    SILENCED.with(|s| s.set(true));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    SILENCED.with(|s| s.set(false));

    let current = panic::take_hook();
    if std::ptr::from_ref(&*current).cast::<()>() == silencer_at {
        drop(current); // releases `delegate`
        match Arc::try_unwrap(previous) {
            Ok(original) => panic::set_hook(original),
            Err(shared) => panic::set_hook(Box::new(move |info| shared(info))),
        }
    } else {
        // Someone installed a hook of their own meanwhile: keep theirs.
        panic::set_hook(current);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_value_or_the_caught_payload() {
        assert_eq!(catch_quietly(|| 6 * 7).ok(), Some(42));
        let payload = catch_quietly(|| -> u32 { panic!("quiet {}", 1) }).unwrap_err();
        assert_eq!(
            crate::model::panic_message(payload.as_ref()).as_deref(),
            Some("quiet 1")
        );
    }

    #[test]
    fn nested_calls_do_not_swap_the_hook_twice() {
        let inner = catch_quietly(|| catch_quietly(|| -> u8 { panic!("inner") }).is_err());
        assert_eq!(inner.ok(), Some(true));
    }
}
