//! Hostile clients against the HTTP service (`examples/serve.rs`) as a real process on a free
//! loopback port: shape bombs and their variants (deep, wide, ragged, overflowing),
//! slowloris (idle, slow-header, slow-body and idle keep-alive connections), more clients
//! than `--max-connections`, a flood of requests whose clients disconnect, and auth variants.
//! After every attack the process is alive and a predict answers correctly.
#![cfg(feature = "onnx")]

mod serve_support;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;
use serve_support::{Opts, Server, golden_request, try_request};

const TOKEN: &str = "hostile-admin-token-0123456789";

/// A predict of three golden rows answers exactly what model v2 answers for them.
fn assert_answers_correctly(s: &Server) {
    let (body, expected) = golden_request(3);
    let r = s.post("/v1/models/digits:predict", &body);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["outputs"]["label"], serde_json::json!(expected));
    assert_eq!(r.json()["version"], "2");
}

fn predict_raw(s: &Server, body: &[u8]) -> serve_support::Reply {
    s.request("POST", "/v1/models/digits:predict", &[], body)
}

fn error_of(r: &serve_support::Reply) -> String {
    r.json()["error"].as_str().unwrap_or_default().to_owned()
}

fn zeros(n: usize) -> String {
    vec!["0"; n].join(",")
}

/// `rows` golden rows (repeated past the 450 in the set), as a predict body.
fn golden_rows(rows: usize) -> (String, Vec<Value>) {
    let (body, labels) = golden_request(450);
    let all = serde_json::from_str::<Value>(&body).unwrap()["inputs"].clone();
    let all = all.as_array().unwrap();
    let picked: Vec<Value> = (0..rows).map(|i| all[i % all.len()].clone()).collect();
    let labels = (0..rows)
        .map(|i| Value::from(labels[i % labels.len()]))
        .collect();
    (serde_json::json!({ "inputs": picked }).to_string(), labels)
}

#[test]
fn shape_bombs_deep_wide_ragged_and_overflowing_bodies_are_400s_and_the_service_keeps_answering() {
    let mut s = Server::start(Opts::default());
    s.wait_ready();
    let rss_before = s.rss_kib();

    // The bomb of the issue: ~8 KB whose first elements declare [1024, 1000, 1000, 1000]
    // (4 * 10^9 values). The old parser reserved that product before looking further.
    let inner = format!("[{}]", zeros(1000));
    let l2 = format!("[{inner},{}]", zeros(999));
    let l1 = format!("[{l2},{}]", zeros(999));
    let bomb = format!(r#"{{"inputs": [{l1},{}]}}"#, zeros(1023));
    assert!(bomb.len() < 9_000, "{}", bomb.len());
    let r = predict_raw(&s, bomb.as_bytes());
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(
        error_of(&r),
        "input `input`: [0][0][1] is a number; expected an array"
    );

    // The same declaration with arrays all the way down, but ragged.
    let ragged_bomb = format!(r#"{{"inputs": [[{inner},[0]]]}}"#);
    let r = predict_raw(&s, ragged_bomb.as_bytes());
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(
        error_of(&r),
        "input `input`: ragged array: [0][1] has 1 elements, but the first array at its depth has 1000"
    );
    let longer = format!(r#"{{"inputs": [[{}],[{}]]}}"#, zeros(64), zeros(65));
    let r = predict_raw(&s, longer.as_bytes());
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(
        error_of(&r),
        "input `input`: ragged array: [1] has more than 64 elements, but the first array at its depth has 64"
    );

    // Deep: closed, and unclosed (1 MB of '[').
    for open in [200, 1_000_000] {
        let close = if open < 1000 { open } else { 0 };
        let deep = format!(
            r#"{{"inputs": {}0{}}}"#,
            "[".repeat(open),
            "]".repeat(close)
        );
        let r = predict_raw(&s, deep.as_bytes());
        assert_eq!(r.status, 400, "{open}: {}", r.text);
        assert!(
            error_of(&r).starts_with("input `input` nests arrays deeper than 16 levels (at [0]"),
            "{}",
            r.text
        );
    }

    // Wide: one row of 300 000 values parses (1.2 MB of f32) and the model refuses its width;
    // too many rows are refused as the 1025th arrives.
    let wide = format!(r#"{{"inputs": [[{}]]}}"#, zeros(300_000));
    let r = predict_raw(&s, wide.as_bytes());
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        error_of(&r).contains("dimension 1 must be 64"),
        "{}",
        r.text
    );
    let row = format!("[{}]", zeros(64));
    let tall = format!(r#"{{"inputs": [{}]}}"#, vec![row.as_str(); 1025].join(","));
    let r = predict_raw(&s, tall.as_bytes());
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(
        error_of(&r),
        "input `input`: more than 1024 rows in one request; this service accepts at most 1024"
    );
    let named_tall = format!(
        r#"{{"inputs": {{"input": [{}]}}}}"#,
        vec![row.as_str(); 1025].join(",")
    );
    assert_eq!(predict_raw(&s, named_tall.as_bytes()).status, 400);

    // Overflowing numbers, and a declared body size far past the limit (refused before a
    // byte of it is read).
    let r = predict_raw(&s, br#"{"inputs": [[1e400]]}"#);
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        error_of(&r).starts_with("malformed JSON: number out of range"),
        "{}",
        r.text
    );
    let r = predict_raw(&s, br#"{"inputs": [[3.0e38, 1e39]]}"#);
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(
        error_of(&r),
        "input `input`[0][1]: 1000000000000000000000000000000000000000 does not fit in f32"
    );
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    c.write_all(
        b"POST /v1/models/digits:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n[",
    )
    .unwrap();
    let mut head = [0u8; 12];
    c.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 413", "{}", String::from_utf8_lossy(&head));
    // Duplicate names and fields.
    let r = predict_raw(&s, br#"{"inputs": {"input": [[0]], "input": [[0]]}}"#);
    assert_eq!(error_of(&r), "input `input` is given twice");
    let r = predict_raw(&s, br#"{"inputs": [[0]], "inputs": [[0]]}"#);
    assert_eq!(error_of(&r), r#"field "inputs" is given twice"#);

    assert!(s.is_running());
    assert_answers_correctly(&s);
    let grown = s.rss_kib().saturating_sub(rss_before);
    assert!(grown < 256 * 1024, "RSS grew by {grown} KiB");
}

/// What a hostile connection does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attack {
    /// Connects and sends nothing.
    Idle,
    /// Sends a request line, then one header byte at a time.
    SlowHeader,
    /// Sends a complete head (Content-Length 100000), then one body byte at a time.
    SlowBody,
    /// Makes one request, reads the answer, then stays connected and silent.
    IdleKeepAlive,
}

struct Hostile {
    attack: Attack,
    stream: TcpStream,
    closed_after: Option<Duration>,
}

impl Hostile {
    fn open(addr: SocketAddr, attack: Attack) -> Hostile {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        match attack {
            Attack::Idle => {}
            Attack::SlowHeader => stream
                .write_all(b"POST /v1/models/digits:predict HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .unwrap(),
            Attack::SlowBody => stream
                .write_all(
                    b"POST /v1/models/digits:predict HTTP/1.1\r\nHost: x\r\n\
                      Content-Length: 100000\r\n\r\n{\"inputs\": [[",
                )
                .unwrap(),
            Attack::IdleKeepAlive => {
                stream
                    .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                    .unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(30)))
                    .unwrap();
                let mut got = Vec::new();
                let mut buf = [0u8; 512];
                while !got.ends_with(br#"{"status":"ok"}"#) {
                    let n = stream.read(&mut buf).unwrap();
                    assert!(n > 0, "closed before answering");
                    got.extend_from_slice(&buf[..n]);
                }
            }
        }
        stream.set_nonblocking(true).unwrap();
        Hostile {
            attack,
            stream,
            closed_after: None,
        }
    }

    /// Sends its next trickled byte (if it trickles) and notes when the server closed it.
    fn step(&mut self, since: Instant) {
        if self.closed_after.is_some() {
            return;
        }
        let mut closed = false;
        if matches!(self.attack, Attack::SlowHeader | Attack::SlowBody) {
            let byte: &[u8] = if self.attack == Attack::SlowHeader {
                b"a"
            } else {
                b"0"
            };
            match self.stream.write(byte) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => closed = true,
            }
        }
        let mut buf = [0u8; 1024];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => closed = true,
                Ok(_) => continue, // an answer (408) before the close
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => closed = true,
            }
            break;
        }
        if closed {
            self.closed_after = Some(since.elapsed());
        }
    }
}

#[test]
fn slowloris_connections_are_closed_within_the_timeouts_while_a_legitimate_client_is_answered() {
    let s = Server::start(Opts::args([
        "--header-timeout-ms",
        "1000",
        "--idle-timeout-ms",
        "1000",
        "--body-timeout-ms",
        "1000",
    ]));
    s.wait_ready();
    let started = Instant::now();
    let mut hostile: Vec<Hostile> = Vec::new();
    for (attack, count) in [
        (Attack::Idle, 200),
        (Attack::SlowHeader, 100),
        (Attack::SlowBody, 100),
        (Attack::IdleKeepAlive, 50),
    ] {
        hostile.extend((0..count).map(|_| Hostile::open(s.addr, attack)));
    }
    // Every timeout is 1 s; the bound is generous for a loaded 2-core machine, and below
    // every default (so the flags are what closes them).
    let bound = Duration::from_secs(8);
    let mut answered = 0;
    while hostile.iter().any(|h| h.closed_after.is_none()) && started.elapsed() < bound {
        for h in &mut hostile {
            h.step(started);
        }
        assert_answers_correctly(&s);
        answered += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    for attack in [
        Attack::Idle,
        Attack::SlowHeader,
        Attack::SlowBody,
        Attack::IdleKeepAlive,
    ] {
        let of_kind: Vec<&Hostile> = hostile.iter().filter(|h| h.attack == attack).collect();
        let open = of_kind.iter().filter(|h| h.closed_after.is_none()).count();
        let slowest = of_kind.iter().filter_map(|h| h.closed_after).max();
        assert_eq!(
            open,
            0,
            "{attack:?}: {open} of {} connections still open after {bound:?} (slowest closed \
             after {slowest:?}); log:\n{}",
            of_kind.len(),
            s.log()
        );
    }
    assert!(answered > 0);
    assert_answers_correctly(&s);
    // Every hostile connection is gone from the server's count too: only the scrape's own
    // remains (the previous client's may take a moment to be released after its answer).
    serve_support::eventually(
        "the connection count to settle",
        Duration::from_secs(10),
        || (s.metric("bluegreen_open_connections") == Some(1.0)).then_some(()),
    );
}

#[test]
fn past_max_connections_new_clients_wait_in_the_backlog_and_are_answered_once_idle_ones_close() {
    let s = Server::start(Opts::args([
        "--max-connections",
        "16",
        "--header-timeout-ms",
        "1000",
    ]));
    s.wait_ready();
    let idle: Vec<TcpStream> = (0..48)
        .map(|_| TcpStream::connect_timeout(&s.addr, Duration::from_secs(10)).unwrap())
        .collect();
    // This client queues behind the idle ones; it is answered once their head timeouts
    // free the slots (bounded by try_request's own read timeout).
    assert_answers_correctly(&s);
    let open = s.metric("bluegreen_open_connections").unwrap();
    assert!(
        open <= 16.0,
        "{open} connections open with --max-connections 16"
    );
    drop(idle);
    assert_answers_correctly(&s);
}

/// Sends a whole request, waits `linger`, and closes the connection without reading the
/// answer.
fn send_and_disconnect(addr: SocketAddr, body: &[u8], linger: Duration) {
    let Ok(mut c) = TcpStream::connect_timeout(&addr, Duration::from_secs(10)) else {
        return;
    };
    let _ = c.set_write_timeout(Some(Duration::from_secs(10)));
    let head = format!(
        "POST /v1/models/digits:predict HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let _ = c.write_all(head.as_bytes());
    let _ = c.write_all(body);
    std::thread::sleep(linger);
    let _ = c.shutdown(Shutdown::Both);
}

#[test]
fn a_full_queue_sheds_with_503_and_retry_after_and_a_disconnect_flood_stays_bounded() {
    let s = Server::start(Opts::args(["--max-queue", "8"]));
    s.wait_ready();
    let addr = s.addr;

    // 1. 32 clients at once against 8 admissions: every answer is right or shed.
    let (body, labels) = golden_rows(256);
    let answers: Vec<serve_support::Reply> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..32)
            .map(|_| {
                scope.spawn(|| {
                    (0..4)
                        .map(|_| {
                            try_request(
                                addr,
                                "POST",
                                "/v1/models/digits:predict",
                                &[],
                                body.as_bytes(),
                            )
                            .unwrap()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let mut shed = 0;
    for r in &answers {
        match r.status {
            200 => assert_eq!(r.json()["outputs"]["label"], Value::Array(labels.clone())),
            503 => {
                shed += 1;
                assert_eq!(r.header("retry-after"), Some("1"), "{r:?}");
                assert_eq!(
                    error_of(r),
                    "the inference queue is full (8 requests queued or running); retry shortly"
                );
            }
            other => panic!("unexpected {other}: {}", r.text),
        }
    }
    assert!(
        shed > 0,
        "128 requests from 32 clients never filled 8 admissions"
    );
    assert_eq!(s.metric("bluegreen_shed_total"), Some(f64::from(shed)));

    // 2. 400 requests of 1024 rows whose clients disconnect at once, or after 30 ms (once
    //    their request had time to be admitted and queued).
    let computed_before = s.metric("bluegreen_inference_jobs_total").unwrap();
    let shed_before = s.metric("bluegreen_shed_total").unwrap();
    let rss_before = s.rss_kib();
    let (flood, _) = golden_rows(1024);
    let mut peak_rss = rss_before;
    let mut peak_depth = 0.0f64;
    std::thread::scope(|scope| {
        let senders: Vec<_> = (0..8)
            .map(|i| {
                let flood = &flood;
                scope.spawn(move || {
                    let linger = Duration::from_millis(if i % 2 == 0 { 0 } else { 30 });
                    for _ in 0..50 {
                        send_and_disconnect(addr, flood.as_bytes(), linger);
                    }
                })
            })
            .collect();
        while senders.iter().any(|h| !h.is_finished()) {
            peak_rss = peak_rss.max(s.rss_kib());
            peak_depth = peak_depth.max(s.metric("bluegreen_queue_depth").unwrap());
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while s.metric("bluegreen_queue_depth") != Some(0.0) {
        assert!(Instant::now() < deadline, "the queue never drained");
        std::thread::sleep(Duration::from_millis(50));
    }
    let computed = s.metric("bluegreen_inference_jobs_total").unwrap() - computed_before;
    let skipped = s.metric("bluegreen_skipped_total").unwrap();
    let flood_shed = s.metric("bluegreen_shed_total").unwrap() - shed_before;
    let summary = format!(
        "{computed} of 400 abandoned requests computed, {skipped} skipped before inference, \
         {flood_shed} shed; peak queue depth {peak_depth}; RSS {rss_before} -> {peak_rss} KiB"
    );
    eprintln!("flood: {summary}");
    assert!(peak_depth <= 8.0, "over --max-queue 8: {summary}");
    assert!(computed < 400.0 && skipped > 0.0, "{summary}");
    let grown = peak_rss.saturating_sub(rss_before);
    assert!(
        grown < 300 * 1024,
        "RSS grew by {grown} KiB during the flood"
    );
    assert_answers_correctly(&s);
}

#[test]
fn bearer_auth_is_exact_and_admin_errors_name_versions_not_paths() {
    let s = Server::start(Opts::default().token(TOKEN));
    s.wait_ready();
    let status = |auth: &[(&str, &str)]| s.request("GET", "/admin/models/digits/status", auth, b"");
    let exact = format!("Bearer {TOKEN}");
    assert_eq!(status(&[("Authorization", &exact)]).status, 200);
    let padded = format!("Bearer   {TOKEN}   ");
    let lower = format!("bearer {TOKEN}");
    let glued = format!("Bearer{TOKEN}");
    let extra = format!("Bearer {TOKEN} extra");
    let prefix = format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]);
    let malformed = "invalid bearer token: expected `Authorization: Bearer <token>` exactly";
    for (auth, message) in [
        (padded.as_str(), malformed),
        (lower.as_str(), malformed),
        (glued.as_str(), malformed),
        (extra.as_str(), malformed),
        ("Basic YWRtaW46czNjcmV0", malformed),
        ("Bearer ", malformed),
        (prefix.as_str(), "invalid bearer token"),
    ] {
        let r = status(&[("Authorization", auth)]);
        assert_eq!(r.status, 401, "{auth:?}: {}", r.text);
        assert_eq!(error_of(&r), message, "{auth:?}");
        assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));
    }
    let r = status(&[("Authorization", &exact), ("Authorization", &exact)]);
    assert_eq!(r.status, 401);
    assert_eq!(
        error_of(&r),
        "invalid bearer token: send exactly one Authorization header"
    );

    // Refusals name the model and version; the repository's path on disk is never shown.
    let root = serve_support::repo_root().join("models/digits");
    let abs = root.display().to_string();
    let r = s.admin("POST", "stage", TOKEN, r#"{"version":"9"}"#);
    assert_eq!(r.status, 404, "{}", r.text);
    assert_eq!(
        error_of(&r),
        "version 9 not found in the repository of digits"
    );
    let r = s.admin("POST", "stage", TOKEN, r#"{"version":"5"}"#);
    assert_eq!(r.status, 422, "{}", r.text);
    let message = error_of(&r);
    assert!(message.contains("<digits>/5/model.onnx"), "{message}");
    for text in [&r.text, &s.admin("GET", "status", TOKEN, "").text] {
        assert!(!text.contains(&abs), "{text}");
        assert!(!text.contains("models/digits"), "{text}");
    }
    assert_answers_correctly(&s);
}
