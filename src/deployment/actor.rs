//! Who asks for an admin operation ([`Actor`]) and the handle that asks in someone's name
//! ([`Acting`]). The actor is written to the journal and the logs with every decision.

use std::fmt;

use super::bluegreen::BlueGreen;
use super::error::Result;
use super::report::{CanaryReport, RollbackReport, StageReport, SwapReport};
use crate::model::Model;
use crate::slot::Identity;
use crate::validation::validate::ValidationReport;

/// Who asked for an admin operation, as the journal (`actor` column) and the logs name it.
///
/// The plain methods of [`BlueGreen`] act as [`Actor::Application`]; an admin API says who
/// its caller is with [`BlueGreen::acting_as`]; the repository watcher acts as
/// [`Actor::Watcher`] and the bake monitor as [`Actor::Bake`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Actor {
    /// The application itself.
    Application,
    /// A caller of the application's admin API, by the name the application gives it
    /// (a token's owner, a user, a CI job).
    Admin(String),
    /// The repository watcher (`bluegreen::watch`).
    Watcher,
    /// The bake monitor, rolling back on its own.
    Bake,
}

impl Actor {
    /// An admin API caller.
    pub fn admin(caller: impl Into<String>) -> Self {
        Actor::Admin(caller.into())
    }

    /// Whether a rollback or canary abort by this actor bans the version left: every
    /// actor's but the watcher's, which rolls back only to follow its manifest (a later
    /// manifest may ask for the version again, and that is an explicit decision).
    pub(crate) fn bans_what_it_leaves(&self) -> bool {
        !matches!(self, Actor::Watcher)
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Application => f.write_str("application"),
            Actor::Admin(caller) => write!(f, "admin:{caller}"),
            Actor::Watcher => f.write_str("watcher"),
            Actor::Bake => f.write_str("bake"),
        }
    }
}

/// The admin operations of a [`BlueGreen`], asked for by one [`Actor`]; from
/// [`BlueGreen::acting_as`]. Each behaves exactly as the method of the same name on
/// [`BlueGreen`]; the journal and the logs record who asked.
///
/// ```
/// use bluegreen::{Actor, BlueGreen, Model};
/// # struct M(u8); impl Model for M { type Input = (); type Output = u8; type Error = std::convert::Infallible;
/// #   fn predict(&self, _: &()) -> Result<u8, Self::Error> { Ok(self.0) } }
/// let bg = BlueGreen::new("v1", M(1))?;
/// let alice = bg.acting_as(Actor::admin("alice"));
/// alice.stage("v2", M(2))?;
/// alice.swap()?;
/// assert_eq!(bg.predict(&()).unwrap(), 2);
/// # Ok::<(), bluegreen::Error>(())
/// ```
pub struct Acting<'a, M: Model> {
    bg: &'a BlueGreen<M>,
    actor: Actor,
}

impl<M: Model> BlueGreen<M> {
    /// The admin operations, asked for by `actor` (recorded in the journal and the logs).
    pub fn acting_as(&self, actor: Actor) -> Acting<'_, M> {
        Acting { bg: self, actor }
    }
}

impl<M: Model> Acting<'_, M> {
    /// Who is asking.
    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    /// [`BlueGreen::stage`], asked for by this actor.
    pub fn stage(&self, identity: impl Into<Identity>, model: M) -> Result<StageReport> {
        self.bg.inner.stage(&self.actor, identity.into(), model)
    }

    /// [`BlueGreen::stage_with`], asked for by this actor.
    pub fn stage_with<F, E>(&self, identity: impl Into<Identity>, load: F) -> Result<StageReport>
    where
        F: FnOnce() -> std::result::Result<M, E>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.bg.inner.stage_with(&self.actor, identity.into(), load)
    }

    /// [`BlueGreen::stage_quarantined`], asked for by this actor.
    #[cfg(feature = "quarantine")]
    pub fn stage_quarantined(
        &self,
        identity: impl Into<Identity>,
        path: impl AsRef<std::path::Path>,
    ) -> Result<StageReport> {
        self.bg
            .inner
            .stage_quarantined(&self.actor, identity.into(), path.as_ref())
    }

    /// [`BlueGreen::stage_quarantined_with`], asked for by this actor.
    #[cfg(feature = "quarantine")]
    pub fn stage_quarantined_with<F, E>(
        &self,
        identity: impl Into<Identity>,
        path: impl AsRef<std::path::Path>,
        load: F,
    ) -> Result<StageReport>
    where
        F: FnOnce(&std::path::Path) -> std::result::Result<M, E>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.bg
            .inner
            .stage_quarantined_with(&self.actor, identity.into(), path.as_ref(), load)
    }

    /// [`BlueGreen::unstage`], asked for by this actor.
    pub fn unstage(&self) -> Result<Option<String>> {
        self.bg.inner.unstage(&self.actor)
    }

    /// [`BlueGreen::validate`], asked for by this actor.
    pub fn validate(&self) -> Result<ValidationReport> {
        self.bg.inner.validate(&self.actor)
    }

    /// [`BlueGreen::swap`], asked for by this actor.
    pub fn swap(&self) -> Result<SwapReport> {
        self.bg.inner.swap(&self.actor)
    }

    /// [`BlueGreen::rollback`], asked for by this actor.
    pub fn rollback(&self) -> Result<RollbackReport> {
        self.bg.inner.rollback(&self.actor)
    }

    /// [`BlueGreen::start_canary`], asked for by this actor.
    pub fn start_canary(&self, percent: f64) -> Result<CanaryReport> {
        self.bg.inner.start_canary(&self.actor, percent)
    }

    /// [`BlueGreen::set_canary_percent`], asked for by this actor.
    pub fn set_canary_percent(&self, percent: f64) -> Result<()> {
        self.bg.inner.set_canary_percent(&self.actor, percent)
    }

    /// [`BlueGreen::promote_canary`], asked for by this actor.
    pub fn promote_canary(&self) -> Result<SwapReport> {
        self.bg.inner.promote_canary(&self.actor)
    }

    /// [`BlueGreen::abort_canary`], asked for by this actor.
    pub fn abort_canary(&self) -> Result<()> {
        self.bg.inner.abort_canary(&self.actor)
    }

    /// [`BlueGreen::check_content`], noticed by this actor.
    pub fn check_content(&self, identity: &Identity) -> Result<()> {
        self.bg.inner.check_content(&self.actor, identity)
    }

    /// [`BlueGreen::unban`], asked for by this actor.
    pub fn unban(&self, version: &str) -> Result<usize> {
        self.bg.inner.unban(&self.actor, version)
    }
}
