//! The wire between parent and child: the [`Job`] the parent writes to the child's stdin,
//! the frames the child writes to its stdout, and a parser that trusts none of it.
//!
//! A frame is `BLUEGREEN-QUARANTINE/1 <length>\n<JSON of that length>\n`. Anything before
//! a frame's marker is ignored (a test harness or the application may print first), but
//! counts against the output limit like everything else the child sends: a child that
//! floods its stdout, declares a length past the limit, or sends a frame that is not the
//! expected JSON is refused as sending garbage, and its output is never held beyond the
//! limit.

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::validation::validate::ValidationReport;

/// The environment variable that makes a process a quarantine child (its value is the
/// protocol version).
pub(crate) const CHILD_ENV: &str = "BLUEGREEN_QUARANTINE";
/// The protocol version parent and child must share.
pub(crate) const PROTOCOL: u32 = 1;
const MARKER: &[u8] = b"BLUEGREEN-QUARANTINE/1 ";
/// Digits of a frame length at most (lengths are bounded by the output limit anyway).
const MAX_LENGTH_DIGITS: usize = 10;

/// What the child is asked to do: load the candidate at [`candidate`](Self::candidate)
/// with the loader registered as [`loader`](Self::loader), run it through the trial that
/// loader builds, and report.
///
/// A registered loader reads its own configuration with [`settings`](Self::settings),
/// as the parent's [`Quarantine`](super::Quarantine) was given it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// The candidate's version label.
    pub version: String,
    /// The candidate's file (or folder).
    pub candidate: PathBuf,
    /// The name of the loader to use, as registered with the
    /// [`Hook`](super::Hook).
    pub loader: String,
    /// The loader's configuration, as the parent gave it (read it with
    /// [`settings`](Self::settings)).
    pub(crate) settings: serde_json::Value,
    /// How long each gate may run in the child.
    #[serde(
        serialize_with = "crate::serde_util::secs",
        deserialize_with = "crate::serde_util::secs_de"
    )]
    pub gate_deadline: Duration,
    /// Caps the child sets on itself before it touches the candidate.
    pub(crate) limits: ChildLimits,
}

impl Job {
    /// The loader's settings, as the parent's [`Quarantine`](super::Quarantine) was given
    /// them.
    ///
    /// # Errors
    /// When they are not a `T`.
    pub fn settings<T: serde::de::DeserializeOwned>(&self) -> Result<T, String> {
        T::deserialize(&self.settings).map_err(|e| e.to_string())
    }
}

/// The caps as the child applies them to itself (`setrlimit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ChildLimits {
    /// Address space, bytes (`RLIMIT_AS`).
    pub(crate) memory: Option<u64>,
    /// CPU time, whole seconds (`RLIMIT_CPU`).
    pub(crate) cpu_secs: Option<u64>,
    /// The parent's wall-clock deadline: the child exits by itself shortly after it.
    #[serde(
        serialize_with = "crate::serde_util::secs",
        deserialize_with = "crate::serde_util::secs_de"
    )]
    pub(crate) wall: Duration,
}

/// What the child measured about itself (`getrusage`), sent with its verdict.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub(crate) struct ChildUsage {
    /// Peak resident set size, bytes.
    pub(crate) peak_rss: Option<u64>,
    /// User + system CPU time, seconds.
    pub(crate) cpu_secs: Option<f64>,
}

/// One message from the child.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Frame {
    /// First, before anything else: the hook is there and speaks this protocol.
    Hello { protocol: u32, loaders: Vec<String> },
    /// The candidate loaded.
    Loaded { load_secs: f64 },
    /// The trial ran: the gates' report.
    Verdict {
        report: ValidationReport,
        usage: ChildUsage,
    },
    /// The loader returned an error or panicked.
    LoadFailed { reason: String, usage: ChildUsage },
    /// The job names a loader this binary did not register.
    UnknownLoader {
        name: String,
        available: Vec<String>,
    },
    /// The job could not be read, or the caps could not be set.
    BadJob { reason: String },
}

impl Frame {
    /// Whether this frame ends the child's work (it exits after sending it).
    pub(crate) fn is_final(&self) -> bool {
        !matches!(self, Frame::Hello { .. } | Frame::Loaded { .. })
    }
}

/// Writes one frame and flushes. The leading newline starts the marker on a line of its
/// own whatever was printed before it.
pub(crate) fn write_frame(out: &mut (impl Write + ?Sized), frame: &Frame) -> io::Result<()> {
    let json = serde_json::to_vec(frame).map_err(io::Error::other)?;
    out.write_all(b"\n")?;
    out.write_all(MARKER)?;
    writeln!(out, "{}", json.len())?;
    out.write_all(&json)?;
    out.write_all(b"\n")?;
    out.flush()
}

/// Incremental, bounded frame parser over the child's stdout.
pub(crate) struct FrameParser {
    buf: Vec<u8>,
    received: usize,
    limit: usize,
}

impl FrameParser {
    /// A parser that refuses more than `limit` bytes in total.
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            buf: Vec::new(),
            received: 0,
            limit,
        }
    }

    /// Feeds the next bytes; returns the frames completed by them, or why the output is
    /// garbage.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Result<Vec<Frame>, String> {
        self.received = self.received.saturating_add(chunk.len());
        if self.received > self.limit {
            return Err(format!(
                "sent more than the limit of {} bytes on its stdout",
                self.limit
            ));
        }
        self.buf.extend_from_slice(chunk);
        let mut frames = Vec::new();
        loop {
            let Some(at) = find(&self.buf, MARKER) else {
                // Keep only what could be the start of a marker.
                let keep = self.buf.len().min(MARKER.len() - 1);
                self.buf.drain(..self.buf.len() - keep);
                return Ok(frames);
            };
            let header = at + MARKER.len();
            let Some(newline) = self.buf[header..].iter().position(|&b| b == b'\n') else {
                if self.buf.len() - header > MAX_LENGTH_DIGITS {
                    return Err("a frame header without a length".to_owned());
                }
                self.buf.drain(..at);
                return Ok(frames);
            };
            let digits = &self.buf[header..header + newline];
            let length = std::str::from_utf8(digits)
                .ok()
                .filter(|d| !d.is_empty() && d.len() <= MAX_LENGTH_DIGITS)
                .filter(|d| d.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|d| d.parse::<usize>().ok())
                .ok_or_else(|| "a frame header with a malformed length".to_owned())?;
            if length > self.limit {
                return Err(format!(
                    "a frame of {length} bytes, past the limit of {} bytes",
                    self.limit
                ));
            }
            let body = header + newline + 1;
            if self.buf.len() - body < length {
                self.buf.drain(..at);
                return Ok(frames);
            }
            let frame: Frame = serde_json::from_slice(&self.buf[body..body + length])
                .map_err(|e| format!("a frame that is not a quarantine message: {e}"))?;
            frames.push(frame);
            self.buf.drain(..body + length);
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello() -> Frame {
        Frame::Hello {
            protocol: PROTOCOL,
            loaders: vec!["onnx".into()],
        }
    }

    fn bytes(frames: &[Frame]) -> Vec<u8> {
        let mut out = b"running 1 test\ntest quarantine_child ... ".to_vec();
        for f in frames {
            write_frame(&mut out, f).unwrap();
        }
        out
    }

    #[test]
    fn frames_survive_noise_and_any_split() {
        let frames = [hello(), Frame::Loaded { load_secs: 0.25 }];
        let all = bytes(&frames);
        for split in 0..all.len() {
            let mut p = FrameParser::new(1 << 20);
            let mut got = p.push(&all[..split]).unwrap();
            got.extend(p.push(&all[split..]).unwrap());
            assert_eq!(got, frames, "split at {split}");
        }
    }

    #[test]
    fn a_flood_or_a_huge_declared_length_is_garbage_within_the_limit() {
        let mut p = FrameParser::new(1000);
        assert!(p.push(&[b'x'; 600]).unwrap().is_empty());
        assert!(p.buf.len() < MARKER.len(), "noise is not kept");
        assert!(p.push(&[b'x'; 600]).unwrap_err().contains("limit of 1000"));

        let mut p = FrameParser::new(1000);
        let err = p.push(b"BLUEGREEN-QUARANTINE/1 99999999\n{").unwrap_err();
        assert!(err.contains("99999999 bytes"), "{err}");
        let mut p = FrameParser::new(1000);
        let err = p.push(b"BLUEGREEN-QUARANTINE/1 -5\n").unwrap_err();
        assert!(err.contains("malformed length"), "{err}");
        let mut p = FrameParser::new(1000);
        let err = p
            .push(b"BLUEGREEN-QUARANTINE/1 123456789012345")
            .unwrap_err();
        assert!(err.contains("without a length"), "{err}");
    }

    #[test]
    fn a_frame_that_is_not_a_message_is_garbage() {
        let mut p = FrameParser::new(1000);
        let err = p
            .push(b"BLUEGREEN-QUARANTINE/1 13\n{\"Hello\":\"x\"}\n")
            .unwrap_err();
        assert!(err.contains("not a quarantine message"), "{err}");
    }
}
