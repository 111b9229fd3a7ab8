//! The request path: [`predict`](BlueGreen::predict), keyed routing
//! ([`predict_keyed`](BlueGreen::predict_keyed)), the [`Active`] pin and outcome reports.
//! `predict`, its versioned form and the pin take no lock and write no memory another
//! request thread writes; `predict_keyed` with [`Affinity`](crate::Affinity) takes the
//! lock of one of 64 session shards, and `record_outcome` the state lock, briefly.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Instant;

use super::bluegreen::{BlueGreen, Inner};
use super::error::{Error, Result};
use crate::model::{Model, ModelInfo};
use crate::slot::Slot;
use crate::traffic::routing;

impl<M: Model> BlueGreen<M> {
    /// Runs the active model on `input`.
    ///
    /// The call runs entirely on the model that was active when it started, even if a
    /// swap or rollback happens meanwhile. It takes no lock and writes no memory shared
    /// with other request threads. The model's own error is returned unchanged.
    // `always`: left to its heuristics, LLVM sometimes keeps this out of line in a hot
    // loop, which measured ~1 ns (15 %) of the trivial-model read path.
    ///
    /// A panic inside the model propagates to the caller (bluegreen does not catch on the
    /// request path: that would cost every call), but the call is still counted — as
    /// failed, in [`SlotStatus::errors`](crate::SlotStatus::errors) and
    /// [`SlotStatus::panics`](crate::SlotStatus::panics) — so a bake window sees a panicking
    /// model exactly as it sees one that returns errors.
    #[inline(always)]
    pub fn predict(&self, input: &M::Input) -> Result<M::Output, M::Error> {
        let inner = &*self.inner;
        inner.mirrored(input, inner.active.load().predict(input))
    }

    /// Like [`predict`](Self::predict), and says which loaded model answered: its version
    /// label and generation, for the answer and for an error alike.
    ///
    /// Costs what `predict` costs: the label is interned when the model is loaded, so
    /// naming it writes no shared memory.
    ///
    /// ```
    /// # use bluegreen::{BlueGreen, Model};
    /// # struct Id(u8); impl Model for Id { type Input = (); type Output = u8;
    /// #   type Error = std::convert::Infallible;
    /// #   fn predict(&self, _: &()) -> Result<u8, Self::Error> { Ok(self.0) } }
    /// let bg = BlueGreen::new("v1", Id(1))?;
    /// let answer = bg.predict_versioned(&());
    /// assert_eq!((answer.output, answer.version), (Ok(1), "v1"));
    /// bg.stage("v2", Id(2))?;
    /// bg.swap()?;
    /// assert_eq!(bg.predict_versioned(&()).version, "v2");
    /// # Ok::<(), bluegreen::Error>(())
    /// ```
    #[inline(always)]
    pub fn predict_versioned(&self, input: &M::Input) -> Versioned<Result<M::Output, M::Error>> {
        let inner = &*self.inner;
        let slot = inner.active.load();
        Versioned {
            output: inner.mirrored(input, slot.predict(input)),
            version: slot.version,
            generation: slot.generation,
        }
    }

    /// Runs the model this request `key` is routed to: the session's pinned version (with
    /// [`Affinity`](crate::Affinity)), else the canary if the key falls in its share, else the active model.
    ///
    /// Keys are hashed with xxh3, stable across processes, so every replica routes a key
    /// the same way. Without a canary or affinity this is [`predict`](Self::predict).
    ///
    /// ```
    /// # use bluegreen::{BlueGreen, Model};
    /// # struct Id(u8); impl Model for Id { type Input = (); type Output = u8;
    /// #   type Error = std::convert::Infallible;
    /// #   fn predict(&self, _: &()) -> Result<u8, Self::Error> { Ok(self.0) } }
    /// let bg = BlueGreen::new("v1", Id(1))?;
    /// bg.stage("v2", Id(2))?;
    /// bg.start_canary(10.0)?; // validated, warmed, 10 % of keys
    /// let on_canary = (0..10_000).filter(|u| bg.predict_keyed(format!("user-{u}"), &()) == Ok(2)).count();
    /// assert!((800..1200).contains(&on_canary));
    /// # Ok::<(), bluegreen::Error>(())
    /// ```
    pub fn predict_keyed(
        &self,
        key: impl AsRef<[u8]>,
        input: &M::Input,
    ) -> Result<M::Output, M::Error> {
        self.routed(key.as_ref(), |slot| {
            self.inner.mirrored(input, slot.predict(input))
        })
    }

    /// Like [`predict_keyed`](Self::predict_keyed), and says which loaded model answered —
    /// with a canary or session affinity, the only way to attribute an answer.
    ///
    /// ```
    /// # use bluegreen::{BlueGreen, Model};
    /// # struct Id(u8); impl Model for Id { type Input = (); type Output = u8;
    /// #   type Error = std::convert::Infallible;
    /// #   fn predict(&self, _: &()) -> Result<u8, Self::Error> { Ok(self.0) } }
    /// let bg = BlueGreen::new("v1", Id(1))?;
    /// bg.stage("v2", Id(2))?;
    /// bg.start_canary(50.0)?;
    /// for user in 0..100 {
    ///     let answer = bg.predict_keyed_versioned(format!("user-{user}"), &());
    ///     let expected = if answer.version == "v2" { 2 } else { 1 };
    ///     assert_eq!(answer.output, Ok(expected));
    /// }
    /// # Ok::<(), bluegreen::Error>(())
    /// ```
    pub fn predict_keyed_versioned(
        &self,
        key: impl AsRef<[u8]>,
        input: &M::Input,
    ) -> Versioned<Result<M::Output, M::Error>> {
        self.routed(key.as_ref(), |slot| Versioned {
            output: self.inner.mirrored(input, slot.predict(input)),
            version: slot.version,
            generation: slot.generation,
        })
    }

    /// Routes `key` (affinity pin, else canary share, else active) and runs `call` on the
    /// chosen slot while the routes' guards are held.
    #[inline]
    fn routed<R>(&self, key: &[u8], call: impl FnOnce(&Slot<M>) -> R) -> R {
        let inner = &*self.inner;
        let active = inner.active.load();
        let canary = inner.canary.load();
        let previous;
        let slot: &Slot<M> = if canary.is_none() && inner.sessions.is_none() {
            &active
        } else {
            let hash = routing::key_hash(key);
            let routed: &Slot<M> = match canary.as_deref() {
                Some(c) if routing::bucket(hash) < c.basis_points => &c.slot,
                _ => &active,
            };
            match &inner.sessions {
                None => routed,
                Some(sessions) => {
                    let now = Instant::now();
                    previous = inner.previous.load();
                    let candidates = [
                        Some(&**active),
                        canary.as_deref().map(|c| &*c.slot),
                        previous.as_deref(),
                    ];
                    let loaded =
                        |g: u64| candidates.into_iter().flatten().find(|s| s.generation == g);
                    let g = sessions.route(hash, now, |g| loaded(g).is_some(), routed.generation);
                    loaded(g).unwrap_or(routed)
                }
            }
        };
        call(slot)
    }

    /// Pins the active model, for several calls on one version (request-level affinity).
    ///
    /// While the pin lives, that model is not retired (a later stage waits for it, up to
    /// the drain timeout). Keep pins short: a thread holding more than a few at once falls
    /// off arc-swap's fast path.
    ///
    /// ```
    /// # use bluegreen::{BlueGreen, Model};
    /// # struct Id; impl Model for Id { type Input = u8; type Output = u8;
    /// #   type Error = std::convert::Infallible;
    /// #   fn predict(&self, x: &u8) -> Result<u8, Self::Error> { Ok(*x) } }
    /// let bg = BlueGreen::new("v1", Id).unwrap();
    /// let pinned = bg.active();
    /// bg.stage("v2", Id).unwrap();
    /// bg.swap().unwrap();
    /// assert_eq!(pinned.version(), "v1"); // still on v1 after the swap
    /// assert_eq!(pinned.predict(&7).unwrap(), 7);
    /// assert_eq!(bg.active().version(), "v2");
    /// ```
    pub fn active(&self) -> Active<'_, M> {
        Active {
            slot: self.inner.active.load(),
            _deployment: PhantomData,
        }
    }

    /// Reports whether a request served by `version` turned out well (a delayed label
    /// matched, the user accepted the answer, …). Feeds the bake window's outcome limits
    /// and [`SlotStatus::outcomes`](crate::SlotStatus::outcomes).
    pub fn record_outcome(&self, version: &str, ok: bool) -> Result<()> {
        let inner = &*self.inner;
        {
            let active = inner.active.load();
            if active.version == version {
                active.stats.record_outcome(ok);
                return Ok(());
            }
        }
        let st = inner.state.lock();
        match [&st.candidate, &st.previous]
            .into_iter()
            .flatten()
            .find(|s| s.slot.version == version)
        {
            Some(s) => {
                s.slot.stats.record_outcome(ok);
                Ok(())
            }
            None => Err(Error::UnknownVersion {
                version: version.to_owned(),
            }),
        }
    }
}

impl<M: Model> Inner<M> {
    /// Offers a successful call to the shadow (when configured) and passes its answer on.
    #[inline]
    pub(super) fn mirrored(
        &self,
        input: &M::Input,
        out: std::result::Result<M::Output, M::Error>,
    ) -> std::result::Result<M::Output, M::Error> {
        if let (Some(shadow), Ok(answer)) = (&self.shadow, &out) {
            shadow.offer(input, answer);
        }
        out
    }
}

/// The active model, pinned; from [`BlueGreen::active`].
///
/// Borrowing the deployment guarantees the model is released before the deployment is
/// dropped, so its last reference still goes through the retirer.
pub struct Active<'a, M: Model> {
    slot: arc_swap::Guard<Arc<Slot<M>>>,
    _deployment: PhantomData<&'a BlueGreen<M>>,
}

impl<M: Model> Active<'_, M> {
    /// Runs the pinned model (counted in the slot's statistics).
    #[inline]
    pub fn predict(&self, input: &M::Input) -> Result<M::Output, M::Error> {
        self.slot.predict(input)
    }

    /// The pinned model's version label.
    pub fn version(&self) -> &str {
        self.slot.version
    }

    /// The pinned model's generation (unique per load).
    pub fn generation(&self) -> u64 {
        self.slot.generation
    }

    /// The hash of the bytes the pinned model was loaded from, when it was staged with one.
    pub fn content(&self) -> Option<crate::slot::ContentHash> {
        self.slot.content
    }

    /// The pinned model itself (calls made directly are not counted in statistics).
    pub fn model(&self) -> &M {
        &self.slot.model
    }

    /// What the pinned model declares about itself.
    pub fn info(&self) -> &ModelInfo {
        &self.slot.info
    }
}

/// An answer (or error) together with the loaded model that computed it; from
/// [`BlueGreen::predict_versioned`] and [`BlueGreen::predict_keyed_versioned`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Versioned<T> {
    /// The model's answer: for the predict methods, its `Result`.
    pub output: T,
    /// The version label of the model that answered.
    pub version: &'static str,
    /// The generation of the model that answered (unique per load: two loads of one
    /// version label differ).
    pub generation: u64,
}

impl<T> Versioned<T> {
    /// The same attribution with `f` applied to the output.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Versioned<U> {
        Versioned {
            output: f(self.output),
            version: self.version,
            generation: self.generation,
        }
    }
}
