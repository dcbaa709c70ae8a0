//! Issue 20, the front door: clients that open connections and then send
//! slowly or not at all. The real binary against Tansu, on 127.0.0.1; the
//! deadlines and the cap are set through their environment variables.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::eventually;
use common::ingest::Ingest;
use common::pipeline::workload;
use tidemark_testkit::{TansuBroker, unique_topic};

/// A connection that sent `sent` and then nothing more.
struct Stalled {
    stream: TcpStream,
    opened: Instant,
}

impl Stalled {
    fn open(addr: &str, sent: &str) -> Self {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream.write_all(sent.as_bytes()).expect("send the head");
        Self { stream, opened: Instant::now() }
    }

    /// Reads until the server closes the connection, for at most `limit`
    /// after it was opened: what the server sent, and when it closed (`None`
    /// when it was still open at the limit).
    fn wait_closed(mut self, limit: Duration) -> (String, Option<Duration>) {
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let left = limit.saturating_sub(self.opened.elapsed());
            if left.is_zero() {
                return (String::from_utf8_lossy(&raw).into_owned(), None);
            }
            self.stream.set_read_timeout(Some(left)).expect("read timeout");
            match self.stream.read(&mut buf) {
                Ok(0) => return (String::from_utf8_lossy(&raw).into_owned(), Some(self.opened.elapsed())),
                Ok(n) => raw.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                // A reset is a close too.
                Err(_) => return (String::from_utf8_lossy(&raw).into_owned(), Some(self.opened.elapsed())),
            }
        }
    }
}

fn declared_8_mib(addr: &str) -> String {
    format!(
        "POST /v1/events HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-ndjson\r\nContent-Length: 8388608\r\n\r\n"
    )
}

/// 36 connections declare an 8 MiB body and send none of it (36 × 8 MiB is
/// more than the 256 MiB byte bound), 4 more send half a request head. A
/// valid request from another connection must still be accepted at once,
/// while they are all held, and the deadlines must then close every one.
#[test]
fn issue_20_slow_bodies_do_not_lock_others_out_and_deadlines_close_them() {
    let broker = TansuBroker::start().expect("tansu starts");
    let prefix = format!("{}.", unique_topic("slow-bodies"));
    let header_ms = 2_000;
    let body_ms = 8_000;
    let ingest = Ingest::spawn_with_env(
        broker.bootstrap(),
        &prefix,
        &[],
        &[("TIDEMARK_HEADER_READ_TIMEOUT_MS", "2000"), ("TIDEMARK_BODY_READ_TIMEOUT_MS", "8000")],
    );
    let bodies: Vec<Stalled> = (0..36).map(|_| Stalled::open(&ingest.http, &declared_8_mib(&ingest.http))).collect();
    let heads: Vec<Stalled> =
        (0..4).map(|_| Stalled::open(&ingest.http, "POST /v1/events HTTP/1.1\r\nHost: x\r\n")).collect();
    eventually("the stalled requests are in flight", Duration::from_secs(10), || {
        let now = ingest.in_flight();
        if now >= 32.0 { Ok(()) } else { Err(now) }
    });

    let started = Instant::now();
    let (status, _, body) = ingest.post("application/json", workload(1, 1, 2001)[0].envelope.as_bytes());
    let took = started.elapsed();
    assert_eq!(status, 202, "a valid request while 40 clients stall got {status} after {took:?}: {body}");
    assert!(took < Duration::from_secs(5), "the valid request took {took:?}");
    let held = ingest.in_flight();
    assert!(held >= 32.0, "the stalled requests were still held when it was accepted ({held} in flight)");

    let margin = Duration::from_secs(5);
    for (i, s) in heads.into_iter().enumerate() {
        let (sent, closed) = s.wait_closed(Duration::from_millis(header_ms) + margin);
        assert!(closed.is_some(), "half-head connection {i} still open {header_ms} ms + {margin:?} later: {sent:?}");
    }
    for (i, s) in bodies.into_iter().enumerate() {
        let (sent, closed) = s.wait_closed(Duration::from_millis(body_ms) + margin);
        let closed = closed
            .unwrap_or_else(|| panic!("slow-body connection {i} still open after {body_ms} ms + {margin:?}: {sent:?}"));
        assert!(closed >= Duration::from_millis(body_ms - 500), "closed after {closed:?}, before its deadline");
        assert!(sent.starts_with("HTTP/1.1 408"), "connection {i} was answered {sent:?}");
        assert!(sent.contains("\"reason\":\"request_timeout\""), "{sent}");
    }
    ingest.wait_in_flight(0.0);
    let (status, _, body) = ingest.post("application/json", workload(1, 1, 2002)[0].envelope.as_bytes());
    assert_eq!(status, 202, "{body}");
}

/// With `TIDEMARK_MAX_CONNECTIONS_PER_PEER=3`, a fourth connection from the
/// same address is closed at once and counted; once one of the three closes,
/// the peer can connect again.
#[test]
fn issue_20_a_peer_over_its_connection_cap_is_closed_at_once() {
    let broker = TansuBroker::start().expect("tansu starts");
    let prefix = format!("{}.", unique_topic("peer-cap"));
    let ingest =
        Ingest::spawn_with_env(broker.bootstrap(), &prefix, &[], &[("TIDEMARK_MAX_CONNECTIONS_PER_PEER", "3")]);
    let mut three: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(&ingest.http).expect("connect")).collect();
    let fourth = Stalled::open(&ingest.http, "");
    let (sent, closed) = fourth.wait_closed(Duration::from_secs(3));
    assert!(closed.is_some(), "a fourth connection from one peer stayed open: {sent:?}");
    let refused = ingest.series("tidemark_ingest_connections_refused_total{cause=\"peer_limit\"}");
    assert_eq!(refused, Some(1.0), "{}", ingest.scrape());

    drop(three.pop());
    let envelope = workload(1, 1, 2003)[0].envelope.clone();
    eventually("the peer connects again once one of its connections closed", Duration::from_secs(10), || {
        let answer = try_post(&ingest.http, &envelope);
        if answer.starts_with("HTTP/1.1 202") { Ok(()) } else { Err(answer) }
    });
}

/// The review's S6: the per-peer cap alone does not bound connections (one
/// IPv6 client holds a whole network of addresses); `--max-connections`
/// does, whoever opens them.
#[test]
fn issue_20_connections_over_the_global_cap_are_closed_at_once() {
    let broker = TansuBroker::start().expect("tansu starts");
    let prefix = format!("{}.", unique_topic("conn-cap"));
    let ingest = Ingest::spawn_with_env(broker.bootstrap(), &prefix, &[], &[("TIDEMARK_MAX_CONNECTIONS", "3")]);
    let mut three: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(&ingest.http).expect("connect")).collect();
    let fourth = Stalled::open(&ingest.http, "");
    let (sent, closed) = fourth.wait_closed(Duration::from_secs(3));
    assert!(closed.is_some(), "a fourth connection stayed open over a cap of 3: {sent:?}");
    let refused = ingest.series("tidemark_ingest_connections_refused_total{cause=\"connection_limit\"}");
    assert_eq!(refused, Some(1.0), "{}", ingest.scrape());
    three.clear();
    let envelope = workload(1, 1, 2004)[0].envelope.clone();
    eventually("a client connects again once connections closed", Duration::from_secs(10), || {
        let answer = try_post(&ingest.http, &envelope);
        if answer.starts_with("HTTP/1.1 202") { Ok(()) } else { Err(answer) }
    });
}

/// One JSON POST on a fresh connection; whatever came back (empty when the
/// server closed the connection without an answer).
fn try_post(addr: &str, envelope: &str) -> String {
    let Ok(mut stream) = TcpStream::connect(addr) else { return String::new() };
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        envelope.len()
    );
    let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(envelope.as_bytes()));
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    String::from_utf8_lossy(&raw).into_owned()
}
