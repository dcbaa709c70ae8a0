//! Reading a counter from a service's Prometheus `/metrics`.
//!
//! Key decision: a plain HTTP/1.0 GET over a socket, so the harness needs no
//! HTTP client and each scrape is one short connection the service answers
//! like Prometheus's.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::Context as _;

/// The text exposition of `http://ADDR/metrics`.
///
/// # Errors
/// If the service does not answer 200 within two seconds.
pub fn metrics(addr: &str) -> anyhow::Result<String> {
    let mut s = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(2))).context("setting a read timeout")?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").context("sending the scrape")?;
    let mut text = String::new();
    s.read_to_string(&mut text).with_context(|| format!("reading {addr}/metrics"))?;
    let (head, body) = text.split_once("\r\n\r\n").context("no end of headers in the scrape")?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        anyhow::bail!("{addr}/metrics answered {}", head.lines().next().unwrap_or_default());
    }
    Ok(body.to_owned())
}

/// The sum of every series of metric `name` (all label sets) in `text`.
pub fn sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            // `name{...} v` or `name v`, not a longer name sharing the prefix.
            let value = if rest.starts_with('{') { &rest[rest.rfind('}')? + 1..] } else { rest };
            if !(rest.starts_with('{') || rest.starts_with(' ')) {
                return None;
            }
            value.split_whitespace().next()?.parse::<f64>().ok()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_every_label_set_and_only_that_name() {
        let text = "# HELP x_total x\n# TYPE x_total counter\nx_total{partition=\"0\"} 3\nx_total{partition=\"1\"} 4.5\nx_total_other 100\nx_total 1\n";
        assert_eq!(sum(text, "x_total"), 8.5);
        assert_eq!(sum(text, "y_total"), 0.0);
    }
}
