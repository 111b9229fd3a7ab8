//! What a loaded model *is*: its version label and, when it came from files, the content
//! hash of those files — [`Identity`] and [`ContentHash`].
//!
//! A label alone cannot tell a version folder that was replaced in place (new bytes, same
//! name) from the one that was loaded, nor a fixed re-upload from the broken one a gate
//! refused. The content hash can: the deployment keeps it with the loaded model, the
//! journal records it with every decision, and bans apply to a label *and* its bytes.
//! Users without files stage by label only (a `&str` or `String` converts into an
//! [`Identity`] with no content hash); then the label is the whole identity.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

/// A BLAKE3 hash of a model's bytes (for a version directory, of every file in it; see
/// [`Repository::identity`](crate::repository::Repository::identity)).
///
/// Shown and parsed as 64 lowercase hex digits.
///
/// ```
/// use bluegreen::ContentHash;
/// let h = ContentHash::of_bytes(b"weights");
/// assert_eq!(h.to_string().len(), 64);
/// assert_eq!(h.to_string().parse::<ContentHash>().unwrap(), h);
/// assert_ne!(h, ContentHash::of_bytes(b"other weights"));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash([u8; 32]);

impl ContentHash {
    /// The hash of `bytes` (a model held in memory).
    pub fn of_bytes(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    /// The hash a BLAKE3 hasher has computed so far.
    pub(crate) fn from_hasher(hasher: &blake3::Hasher) -> Self {
        Self(*hasher.finalize().as_bytes())
    }

    /// The 32 raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The first 12 hex digits, for messages.
    pub fn short(&self) -> String {
        let mut s = self.to_string();
        s.truncate(12);
        s
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({self})")
    }
}

/// A string that is not 64 hex digits, given as a [`ContentHash`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a content hash (64 hex digits): {0:?}")]
pub struct InvalidContentHash(pub String);

impl FromStr for ContentHash {
    type Err = InvalidContentHash;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidContentHash(s.chars().take(80).collect());
        if s.len() != 64 || !s.is_ascii() {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Self(out))
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for ContentHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Who a candidate is: its version label and, when known, the hash of its bytes.
///
/// Every `stage`, `stage_with` and `build` takes `impl Into<Identity>`, so a label alone
/// works as before (`bg.stage("v2", model)`); a model read from a version directory gets
/// its hash from [`Repository::identity`](crate::repository::Repository::identity).
///
/// ```
/// use bluegreen::{ContentHash, Identity};
/// let plain: Identity = "v2".into();
/// assert_eq!((plain.version(), plain.content()), ("v2", None));
///
/// let bytes = b"model bytes";
/// let id = Identity::new("v2").with_content(ContentHash::of_bytes(bytes));
/// assert_eq!(id.content(), Some(ContentHash::of_bytes(bytes)));
/// assert_ne!(id, plain, "same label, different identity");
/// ```
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    version: String,
    content: Option<ContentHash>,
}

impl Identity {
    /// A label with no content hash.
    pub fn new(version: impl Into<String>) -> Self {
        Self {
            version: version.into(),
            content: None,
        }
    }

    /// The same label, with the hash of its bytes.
    #[must_use]
    pub fn with_content(mut self, content: ContentHash) -> Self {
        self.content = Some(content);
        self
    }

    /// The version label.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The hash of its bytes, if known.
    pub fn content(&self) -> Option<ContentHash> {
        self.content
    }

    /// Both parts.
    pub fn into_parts(self) -> (String, Option<ContentHash>) {
        (self.version, self.content)
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.content {
            Some(h) => write!(f, "{} (content {})", self.version, h.short()),
            None => f.write_str(&self.version),
        }
    }
}

impl From<&str> for Identity {
    fn from(v: &str) -> Self {
        Self::new(v)
    }
}

impl From<String> for Identity {
    fn from(v: String) -> Self {
        Self::new(v)
    }
}

impl From<&String> for Identity {
    fn from(v: &String) -> Self {
        Self::new(v.as_str())
    }
}

impl From<Box<str>> for Identity {
    fn from(v: Box<str>) -> Self {
        Self::new(v.into_string())
    }
}

impl From<Cow<'_, str>> for Identity {
    fn from(v: Cow<'_, str>) -> Self {
        Self::new(v.into_owned())
    }
}

impl From<&Identity> for Identity {
    fn from(v: &Identity) -> Self {
        v.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_bad_hex_is_refused() {
        let h = ContentHash::of_bytes(b"x");
        assert_eq!(h.to_string().parse::<ContentHash>(), Ok(h));
        for bad in ["", "zz", &"g".repeat(64), &"a".repeat(63), &"é".repeat(32)] {
            assert!(bad.parse::<ContentHash>().is_err(), "{bad:?}");
        }
        assert_eq!(h.short().len(), 12);
    }
}
