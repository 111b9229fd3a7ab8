//! Reading a caught panic: models, gates and hooks are untrusted code, and every place
//! that catches their panics reports the message the same way.

use std::any::Any;

/// The text of a panic payload (`panic!("...")` gives `&str` or `String`); `None` for
/// other payloads, which each caller describes in its own terms.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> Option<String> {
    if let Some(s) = payload.downcast_ref::<&str>() {
        Some((*s).to_owned())
    } else {
        payload.downcast_ref::<String>().cloned()
    }
}
