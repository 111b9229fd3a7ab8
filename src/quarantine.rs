//! Quarantine: qualifying an untrusted candidate in a child process, under caps, before
//! it enters the serving process.
//!
//! A candidate loaded and gated inside the serving process can burn its cores or memory:
//! measured here, an ONNX model with an endless `Loop` took 120 s to be refused while two
//! gate threads spun at 100 % of a 2-core machine, and one with a huge `ConstantOfShape`
//! pushed the service from 55 MB to 3.2 GB during its gates. Threads cannot be killed;
//! processes can, and the kernel caps them.
//!
//! # What happens
//!
//! [`Quarantine::qualify`] starts a child process, writes it a [`Job`] (the candidate's
//! path and version, the loader to use and its settings) and watches it:
//!
//! 1. The child says hello (proving it runs the [`Hook`]), reads the job, caps itself
//!    (`setrlimit`: address space, CPU seconds, no core dumps), loads the candidate with
//!    the named loader, warms it up and runs the [`Trial`]'s gates.
//! 2. It writes the [`ValidationReport`](crate::ValidationReport) back over its stdout
//!    and exits. The parent reads at most a bounded amount and parses it defensively.
//! 3. The parent kills it (SIGKILL) at the wall-clock deadline, past its CPU cap, when it
//!    sends garbage or stays silent; the kernel fails its allocations past the memory cap.
//!
//! The result is a [`QuarantineReport`]: passed, or a [`QuarantineError`] naming the cause
//! (crashed by a signal, exceeded memory / CPU / wall time, refused by a gate, failed to
//! load, sent garbage, does not run the hook, …), with the child's peak memory, CPU time
//! and duration. Only a candidate the child passed is loaded into the serving process —
//! [`stage_quarantined`](crate::BlueGreen::stage_quarantined) — where the normal gates
//! run again at [`swap`](crate::BlueGreen::swap) (cheap: the child proved it loads and
//! runs). The live model serves throughout: nothing of the candidate runs in the serving
//! process until it passed, and the deployment's admin lock is not held while the child
//! runs.
//!
//! # How the child runs code: re-executing the application
//!
//! The child is a fresh copy of the **application's own binary** (`current_exe()`), with
//! `BLUEGREEN_QUARANTINE` set in its environment; `main()` calls
//! [`bluegreen::quarantine::enter()`](crate::quarantine::enter) (or [`Hook::enter`]) first,
//! which in a child runs the job and exits, and elsewhere returns at once. Why not a
//! helper binary shipped by the crate: a library's binaries are not built for its
//! dependents (Cargo has no stable artifact dependencies), and only the application's
//! binary has the application's models — a generic `M: Model` registers its loader with
//! [`Hook::register`] — and links ONNX Runtime the way the application chose. The
//! built-in `OnnxModel` loader needs no registration. A separate helper program is still
//! possible: [`Quarantine::program`] and [`Quarantine::args`] point the child elsewhere
//! (the tests point it at the test binary itself).
//!
//! Forgetting the hook cannot go unnoticed: a child that does not say hello within the
//! handshake deadline, or exits without it, is refused with [`QuarantineError::NoHook`],
//! whose message says what to add to `main()`. By default the child gets one argument,
//! `--bluegreen-quarantine-child`, so an application that forgot the hook and parses its
//! arguments exits at once with a usage error instead of starting up.
//!
//! # What runs in the child
//!
//! The loader's [`Trial`]: the candidate and the gates that judge it **alone** — there is
//! no live model in the child (gates see the candidate as both candidate and live). For
//! ONNX ([`OnnxTrial`](crate::onnx::OnnxTrial)): load, warm up from the declared input
//! schema (or golden rows), then sanity and accuracy on a golden set when one is given.
//! Comparisons with the live model (regression, agreement, schema) run in the serving
//! process, with every configured gate, before the swap.
//!
//! # The caps
//!
//! Memory is an address-space cap (`RLIMIT_AS`) the child sets on itself
//! before touching the candidate; CPU time is watched by the parent (Linux, `/proc`) with
//! `RLIMIT_CPU` as a backstop; the wall-clock deadline and the output limit are the
//! parent's. Size the memory cap at a few times the model's size plus ~200 MB: ONNX
//! Runtime reserves address space it never touches.
//!
//! # Platforms
//!
//! Linux: everything above. Other Unix systems (macOS, the BSDs): the same caps through
//! `setrlimit`, but CPU time is enforced by the kernel only (whole seconds) and the
//! child's peak memory and CPU time are known only from its own report (none when it was
//! killed). Windows: no `setrlimit` — the child refuses to run the candidate
//! ([`QuarantineError::Setup`]); job objects would be the way there, not done yet.
//!
//! # Time of check, time of use
//!
//! The candidate file's content hash (xxh3) is taken before the child starts, again after
//! it passed, and once more after the serving process loaded it; a file that changed in
//! between is refused ([`QuarantineError::Changed`]). Publish candidates by writing a new
//! folder and renaming it into place (the repository's completion-marker rule) anyway.
//!
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use bluegreen::onnx::{OnnxModel, OnnxTrial};
//! use bluegreen::quarantine::Quarantine;
//! use bluegreen::BlueGreen;
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     bluegreen::quarantine::enter(); // first: in a quarantine child, this runs the job and exits
//!
//!     let trial = OnnxTrial::new().golden("models/digits/golden.npz").min_accuracy(0.9);
//!     let bg = BlueGreen::builder()
//!         .quarantine(Quarantine::onnx(trial).memory_limit(1 << 30).wall_limit(Duration::from_secs(30)))
//!         .build("1", OnnxModel::load("models/digits/1/model.onnx")?)?;
//!     let staged = bg.stage_quarantined("2", "models/digits/2/model.onnx")?;
//!     println!("{}", staged.quarantine.as_ref().expect("quarantined"));
//!     bg.swap()?; // the normal gates run again, in this process
//!     Ok(())
//! }
//! ```

pub use crate::validation::quarantine::{
    Hook, Job, Quarantine, QuarantineError, QuarantineReport, Trial, Usage,
};

impl Hook {
    /// A hook that knows the built-in loaders: `onnx` (`OnnxModel`, with the `onnx`
    /// feature). Add your own with [`register`](Self::register), then call
    /// [`enter`](Self::enter) first in `main()`.
    pub fn new() -> Self {
        let hook = Hook::empty();
        #[cfg(feature = "onnx")]
        let hook = crate::onnx::register_quarantine_loader(hook);
        hook
    }
}

impl Default for Hook {
    fn default() -> Self {
        Self::new()
    }
}

/// Call this first in `main()`: in a quarantine child it runs the job with the built-in
/// loaders and exits the process; anywhere else it returns at once. Same as
/// `Hook::new().enter()`; use [`Hook`] to register loaders of your own.
pub fn enter() {
    Hook::new().enter();
}
