//! Serialization helpers for the optional `serde` feature: times as plain numbers.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serializer;

/// A duration as fractional seconds.
pub(crate) fn secs<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// A wall-clock time as fractional seconds since the Unix epoch.
pub(crate) fn unix_secs<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    s.serialize_f64(since.as_secs_f64())
}

/// An optional duration as fractional seconds (or null).
pub(crate) fn opt_secs<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

/// An optional wall-clock time as fractional seconds since the Unix epoch (or null).
pub(crate) fn opt_unix_secs<S: Serializer>(
    t: &Option<SystemTime>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => unix_secs(t, s),
        None => s.serialize_none(),
    }
}

/// Reads what [`secs`] wrote; a negative, non-finite or overflowing number is an error,
/// not a panic (reports may come from an untrusted child process).
pub(crate) fn secs_de<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let v: f64 = serde::Deserialize::deserialize(d)?;
    Duration::try_from_secs_f64(v).map_err(serde::de::Error::custom)
}

/// Reads what [`unix_secs`] wrote, with the same checks as [`secs_de`].
pub(crate) fn unix_secs_de<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
    let since = secs_de(d)?;
    UNIX_EPOCH
        .checked_add(since)
        .ok_or_else(|| serde::de::Error::custom("time out of range"))
}
