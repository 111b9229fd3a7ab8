//! The last owner of a deployment may be the auto-rollback hook itself, running on the bake
//! monitor thread: dropping the deployment there must not make that thread join itself.
//! (Its own test binary: it installs a panic hook to see panics on background threads.)

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, OnceLock, Weak};
use std::time::Duration;

use bluegreen::{Bake, BlueGreen};
use common::{Behavior, Tracked, Tracker, wait_until};

static PANICS: AtomicUsize = AtomicUsize::new(0);

#[test]
fn a_hook_holding_the_last_reference_shuts_the_deployment_down_cleanly() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        default_hook(info);
    }));

    let t = Tracker::new();
    let me: Arc<OnceLock<Weak<BlueGreen<Tracked>>>> = Arc::new(OnceLock::new());
    let in_hook = Arc::new(Barrier::new(2));
    let owner_gone = Arc::new(Barrier::new(2));
    let (hook_me, hook_in, hook_gone) = (
        Arc::clone(&me),
        Arc::clone(&in_hook),
        Arc::clone(&owner_gone),
    );
    let bg = Arc::new(
        BlueGreen::builder()
            .bake(
                Bake::for_duration(Duration::from_secs(60))
                    .max_error_rate(0.05)
                    .check_every(Duration::from_millis(2)),
            )
            .on_auto_rollback(move |_| {
                let last = hook_me.get().and_then(Weak::upgrade);
                hook_in.wait();
                hook_gone.wait(); // the owner has dropped its reference: `last` is the last
                drop(last);
            })
            .build("v1", t.model(1))
            .unwrap(),
    );
    me.set(Arc::downgrade(&bg)).unwrap();
    bg.stage("v2", t.model_with(2, Behavior::Failing)).unwrap();
    bg.swap().unwrap();
    for i in 0..100 {
        let _ = bg.predict(&i);
    }
    in_hook.wait();
    drop(bg);
    owner_gone.wait();

    assert!(
        wait_until(Duration::from_secs(20), || t.alive() == 0),
        "models released"
    );
    assert_eq!((t.drops_of(1), t.drops_of(2)), (1, 1));
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "no thread panicked");
}
