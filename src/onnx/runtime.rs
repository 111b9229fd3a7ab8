//! The process-wide ONNX Runtime environment, created once, with errors instead of panics.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;
use parking_lot::Mutex;

use super::OnnxError;
use super::quiet::catch_quietly;
use crate::model::panic_message;

/// The environment every bluegreen session is created in.
static ENV: OnceLock<Environment> = OnceLock::new();
/// Serializes first-time initialization (`OnceLock::get_or_try_init` is not stable).
static INIT: Mutex<()> = Mutex::new(());

/// Makes sure ONNX Runtime is loaded and bluegreen's environment exists.
///
/// Loading a model calls this implicitly; call it yourself at start-up to fail early with a
/// clear message. Safe to call many times and from many threads: the work happens once, and a
/// failed attempt is retried on the next call (e.g. after running `scripts/setup-ort.sh`).
///
/// How the library is found depends on how *your* binary links ONNX Runtime:
/// - ort's `download-binaries` (or a static/system link): it is already linked in.
/// - ort's `load-dynamic`: from `ORT_DYLIB_PATH`, else `libonnxruntime.so` on the loader's
///   search path. To load from an explicit path, call `ort::init_from(path)` (returns an
///   error instead of panicking) before this function, or build the environment yourself
///   and pass it to [`init_runtime_with`].
///
/// # Errors
/// - [`OnnxError::RuntimeNotFound`] when `ORT_DYLIB_PATH` names a file that does not exist.
/// - [`OnnxError::RuntimeUnavailable`] when `ORT_DYLIB_PATH` names a directory or a file that
///   is not a shared library (both checked before ort is touched), or when the library
///   cannot be loaded or is too old (ort rc.15 needs ONNX Runtime ≥ 1.31). ort reports the
///   latter by panicking inside its lazy initializer; bluegreen catches that panic and
///   returns this error, with the panic hook silenced for the calling thread meanwhile: no
///   panic text on stderr, and your own panic hook is not called (other threads' panics
///   still reach it; see the [module docs](super#runtime-initialization-and-errors)).
///   Under `panic = "abort"` the process aborts in that case; the checks made before ort
///   is touched still return errors.
/// - [`OnnxError::ForeignEnvironment`] when something else in the process already created
///   an ort environment: pass that one to [`init_runtime_with`].
///
/// Every runtime error message says what to do: run `scripts/setup-ort.sh`, or set
/// `ORT_DYLIB_PATH` to `libonnxruntime.so` 1.31.x, or enable ort's `download-binaries`.
pub fn init_runtime() -> Result<(), OnnxError> {
    environment().map(|_| ())
}

/// Makes bluegreen create its sessions in `env`, an environment you built yourself (custom
/// name, logging, global thread pool, execution providers, or a library loaded with
/// `ort::init_from(path)`).
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // With ort's `load-dynamic` feature enabled in your Cargo.toml:
/// // let env = ort::init_from("/opt/onnxruntime/lib/libonnxruntime.so.1.31.1")?.build()?;
/// let env = ort::init().with_name("my-service").build()?;
/// bluegreen::onnx::init_runtime_with(env)?;
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// [`OnnxError::RuntimeAlreadyInitialized`] if bluegreen's environment already exists (a
/// model was loaded or [`init_runtime`] succeeded before this call).
pub fn init_runtime_with(env: Environment) -> Result<(), OnnxError> {
    let _guard = INIT.lock();
    if ENV.get().is_some() {
        return Err(OnnxError::RuntimeAlreadyInitialized);
    }
    ENV.set(env)
        .map_err(|_| OnnxError::RuntimeAlreadyInitialized)
}

/// Whether bluegreen's ONNX Runtime environment exists (a model was loaded, or
/// [`init_runtime`] / [`init_runtime_with`] succeeded).
pub fn runtime_initialized() -> bool {
    ENV.get().is_some()
}

/// The environment, created on first use.
pub(crate) fn environment() -> Result<&'static Environment, OnnxError> {
    if let Some(env) = ENV.get() {
        return Ok(env);
    }
    let _guard = INIT.lock();
    if let Some(env) = ENV.get() {
        return Ok(env);
    }
    let env = create_environment()?;
    Ok(ENV.get_or_init(|| env))
}

fn create_environment() -> Result<Environment, OnnxError> {
    check_dylib_path()?;
    // With `load-dynamic`, the first ort call loads the library and panics if it cannot.
    // ort's own once-cell resets on panic, so a later attempt starts clean. The panic is
    // an error in disguise: caught without the panic hook printing it (`quiet.rs`).
    let built = catch_quietly(|| {
        ort::init()
            .with_name("bluegreen")
            .with_telemetry(false)
            .build()
    });
    match built {
        Ok(Ok(env)) => Ok(env),
        Ok(Err(e)) if e.message().contains("only one environment") => {
            Err(OnnxError::ForeignEnvironment {
                reason: e.to_string(),
            })
        }
        Ok(Err(e)) => Err(OnnxError::RuntimeUnavailable {
            reason: e.to_string(),
        }),
        Err(payload) => Err(OnnxError::RuntimeUnavailable {
            reason: panic_message(payload.as_ref())
                .unwrap_or_else(|| "ort panicked while initializing".to_string()),
        }),
    }
}

/// Checks `ORT_DYLIB_PATH`, when it names a file path (not a bare library name for the
/// loader's search), before ort tries to load it: it must exist where ort looks (as given,
/// or relative to the executable's directory), be a file, and start like a shared library.
/// Catches the common mistakes without going through ort's panic.
fn check_dylib_path() -> Result<(), OnnxError> {
    let Some(value) = std::env::var_os("ORT_DYLIB_PATH").filter(|v| !v.is_empty()) else {
        return Ok(());
    };
    let given = PathBuf::from(value);
    if given.components().count() <= 1 && !given.is_absolute() {
        return Ok(()); // a bare file name: dlopen searches the library path
    }
    let Some(path) = where_ort_looks(&given) else {
        return Err(OnnxError::RuntimeNotFound { path: given });
    };
    if path.is_dir() {
        return Err(OnnxError::RuntimeUnavailable {
            reason: format!(
                "ORT_DYLIB_PATH `{}` is a directory; it must name the library file itself",
                path.display()
            ),
        });
    }
    if let Some(false) = looks_like_shared_library(&path) {
        return Err(OnnxError::RuntimeUnavailable {
            reason: format!(
                "ORT_DYLIB_PATH `{}` is not a shared library",
                path.display()
            ),
        });
    }
    Ok(())
}

fn where_ort_looks(path: &Path) -> Option<PathBuf> {
    if path.is_relative()
        && let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
        && dir.join(path).exists()
    {
        return Some(dir.join(path));
    }
    path.exists().then(|| path.to_path_buf())
}

/// `Some(false)` when the file's first bytes are no ELF, Mach-O or PE header; `None` when
/// it cannot be read (the loader will say why).
fn looks_like_shared_library(path: &Path) -> Option<bool> {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .ok()?;
    let known = magic == [0x7f, b'E', b'L', b'F']
        || magic[..2] == *b"MZ"
        || matches!(
            magic,
            [0xfe, 0xed, 0xfa, 0xce | 0xcf]
                | [0xce | 0xcf, 0xfa, 0xed, 0xfe]
                | [0xca, 0xfe, 0xba, 0xbe]
        );
    Some(known)
}
