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

/// The cumulative bucket counts of histogram `name` in `text`, as
/// (upper bound, count), summed over label sets, sorted by bound.
fn buckets(text: &str, name: &str) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    let series = format!("{name}_bucket{{");
    for line in text.lines().filter(|l| l.starts_with(&series)) {
        let Some(le) = line.split("le=\"").nth(1).and_then(|r| r.split('"').next()) else { continue };
        let bound = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap_or(f64::NAN) };
        let count: f64 = line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
        match out.iter_mut().find(|(b, _)| *b == bound) {
            Some((_, c)) => *c += count,
            None => out.push((bound, count)),
        }
    }
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// The upper bound of the bucket of histogram `name` that holds quantile `q`
/// of the observations made between scrapes `before` and `after`: a bound
/// on that quantile, as fine as the histogram's buckets. `None` when no
/// observation was made.
pub fn quantile_bound(before: &str, after: &str, name: &str, q: f64) -> Option<f64> {
    let earlier = buckets(before, name);
    let deltas: Vec<(f64, f64)> = buckets(after, name)
        .into_iter()
        .map(|(bound, count)| (bound, count - earlier.iter().find(|(b, _)| *b == bound).map_or(0.0, |(_, c)| *c)))
        .collect();
    let total = deltas.last()?.1;
    if total <= 0.0 {
        return None;
    }
    deltas.into_iter().find(|(_, count)| *count >= q * total).map(|(bound, _)| bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quantile_bound_is_the_bucket_holding_it_between_two_scrapes() {
        let h = |a: u32, b: u32, c: u32| {
            format!(
                "# TYPE d histogram\nd_bucket{{le=\"0.001\"}} {a}\nd_bucket{{le=\"0.01\"}} {b}\nd_bucket{{le=\"+Inf\"}} {c}\nd_count {c}\n"
            )
        };
        // 100 observations between the scrapes: 90 under 1 ms, 9 more under 10 ms, 1 above.
        let (before, after) = (h(5, 5, 5), h(95, 104, 105));
        assert_eq!(quantile_bound(&before, &after, "d", 0.5), Some(0.001));
        assert_eq!(quantile_bound(&before, &after, "d", 0.99), Some(0.01));
        assert_eq!(quantile_bound(&before, &after, "d", 0.999), Some(f64::INFINITY));
        assert_eq!(quantile_bound(&after, &after, "d", 0.99), None, "nothing observed");
    }

    #[test]
    fn sums_every_label_set_and_only_that_name() {
        let text = "# HELP x_total x\n# TYPE x_total counter\nx_total{partition=\"0\"} 3\nx_total{partition=\"1\"} 4.5\nx_total_other 100\nx_total 1\n";
        assert_eq!(sum(text, "x_total"), 8.5);
        assert_eq!(sum(text, "y_total"), 0.0);
    }
}
