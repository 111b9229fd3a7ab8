//! The admin API's bearer token: strict parsing, constant-time comparison.
//!
//! `Authorization: Bearer <token>` exactly: the scheme `Bearer`, one space, then the token
//! as sent — nothing is trimmed or case-folded, so `Bearer   s3cret` or `bearer s3cret` is
//! refused. The token must be an RFC 6750 `b64token` (letters, digits, `-._~+/`, trailing
//! `=`), the header must appear once, and the comparison takes the same time however much of
//! the token matched. (HTTP itself strips whitespace around a header *value*; that is the
//! only whitespace that never reaches this check.)

use axum::http::{HeaderMap, header};

/// Why a request is not authorized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The service has no token configured: the admin API is off (403).
    #[error("the admin API is disabled: start the service with BLUEGREEN_ADMIN_TOKEN set")]
    Disabled,
    /// No `Authorization` header (401).
    #[error("missing credentials: send Authorization: Bearer <BLUEGREEN_ADMIN_TOKEN>")]
    Missing,
    /// More than one `Authorization` header (401).
    #[error("invalid bearer token: send exactly one Authorization header")]
    Repeated,
    /// Not `Bearer <b64token>` exactly (401).
    #[error("invalid bearer token: expected `Authorization: Bearer <token>` exactly")]
    Malformed,
    /// Well-formed, but not the configured token (401).
    #[error("invalid bearer token")]
    Wrong,
}

/// The configured token, checked once at start-up.
#[derive(Clone)]
pub struct AdminToken(Option<Vec<u8>>);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.write_str(if self.0.is_some() {
            "AdminToken(set)"
        } else {
            "AdminToken(unset)"
        })
    }
}

impl AdminToken {
    /// From the environment's value: unset or empty disables the admin API; a value that is
    /// not a valid bearer token (so no client could ever send it) is an error.
    pub fn from_env_value(value: Option<String>) -> Result<Self, String> {
        match value {
            None => Ok(AdminToken(None)),
            Some(v) if v.is_empty() => Ok(AdminToken(None)),
            Some(v) if is_b64token(v.as_bytes()) => Ok(AdminToken(Some(v.into_bytes()))),
            Some(_) => Err(
                "BLUEGREEN_ADMIN_TOKEN is not a valid bearer token: use letters, digits and \
                 -._~+/ (optionally ending in =), no spaces"
                    .to_owned(),
            ),
        }
    }

    /// Whether the admin API is on.
    pub fn is_set(&self) -> bool {
        self.0.is_some()
    }

    /// Checks a request's headers.
    pub fn authorize(&self, headers: &HeaderMap) -> Result<(), AuthError> {
        let Some(expected) = &self.0 else {
            return Err(AuthError::Disabled);
        };
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        let Some(value) = values.next() else {
            return Err(AuthError::Missing);
        };
        if values.next().is_some() {
            return Err(AuthError::Repeated);
        }
        let token = value
            .as_bytes()
            .strip_prefix(b"Bearer ")
            .filter(|t| is_b64token(t))
            .ok_or(AuthError::Malformed)?;
        if constant_time_eq(token, expected) {
            Ok(())
        } else {
            Err(AuthError::Wrong)
        }
    }
}

/// RFC 6750: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(t: &[u8]) -> bool {
    let body = t.iter().rposition(|&c| c != b'=').map_or(0, |i| i + 1);
    body > 0
        && t[..body]
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || b"-._~+/".contains(&c))
}

/// Compares without an early exit (`subtle`), so the time taken does not reveal how much
/// matched; only a length mismatch returns early, and the length is not the secret.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}
