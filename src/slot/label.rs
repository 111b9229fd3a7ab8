//! Version labels, interned for the life of the process.
//!
//! A versioned answer ([`Versioned`](crate::Versioned)) names the version that computed it.
//! Handing out a `String` or an `Arc<str>` per call would allocate or write a reference
//! count that every request thread shares — exactly what the read path must not do. So a
//! loaded model's label is interned once, when its slot is made, and answers carry a
//! `&'static str`.
//!
//! The cost is memory that is never given back: one copy of each *distinct* label of a
//! model that was actually loaded (at most 256 bytes each, the longest label accepted).
//! Staging the same label again reuses its copy. A process would need to load many
//! thousands of distinct versions before this shows next to one model's weights.

use std::collections::HashSet;
use std::sync::OnceLock;

use parking_lot::Mutex;

/// The process-wide copy of `label`, made on first use.
pub(crate) fn intern(label: &str) -> &'static str {
    static LABELS: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut labels = LABELS.get_or_init(Mutex::default).lock();
    if let Some(&known) = labels.get(label) {
        return known;
    }
    let leaked: &'static str = Box::leak(label.to_owned().into_boxed_str());
    labels.insert(leaked);
    leaked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_copy_per_distinct_label() {
        let a = intern("v-intern-test");
        let b = intern(&String::from("v-intern-test"));
        assert!(std::ptr::eq(a, b), "the same label must share one copy");
        assert_ne!(intern("v-intern-other").as_ptr(), a.as_ptr());
        assert_eq!(a, "v-intern-test");
    }
}
