//! The `/metrics` endpoint, on its own listener so that scraping never
//! competes with the service's own port (and can be firewalled apart).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

/// The OpenMetrics text content type that `prometheus_client` encodes.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The classic Prometheus text format, for scrapers and tools (promtool) that
/// do not ask for OpenMetrics.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A service's own account of its health for `/healthz`: whether a
/// liveness probe should pass, and a JSON body saying why.
pub type HealthCheck = Arc<dyn Fn() -> (bool, String) + Send + Sync>;

/// Binds `listen` and serves `registry` at `/metrics` until `shutdown`, and
/// `health` at `/healthz` when the service has one (200 when alive, 503
/// otherwise, with its JSON). Returns the bound address (useful with port
/// 0) and the server task.
///
/// # Errors
/// If the address cannot be bound.
pub async fn serve(
    listen: SocketAddr,
    registry: Registry,
    health: Option<HealthCheck>,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let registry = Arc::new(registry);
    let mut app = Router::new();
    if let Some(health) = health {
        app = app.route(
            "/healthz",
            get(move || {
                let (alive, body) = health();
                let status =
                    if alive { axum::http::StatusCode::OK } else { axum::http::StatusCode::SERVICE_UNAVAILABLE };
                async move { (status, [(header::CONTENT_TYPE, "application/json")], body).into_response() }
            }),
        );
    }
    let app = app.route(
        "/metrics",
        get(move |headers: HeaderMap| {
            let registry = registry.clone();
            async move {
                let mut body = String::new();
                if prometheus_client::encoding::text::encode(&mut body, &registry).is_err() {
                    return axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response();
                }
                let wants_openmetrics = headers
                    .get(header::ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.contains("application/openmetrics-text"));
                if wants_openmetrics {
                    ([(header::CONTENT_TYPE, OPENMETRICS)], body).into_response()
                } else {
                    ([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], to_prometheus_text(&body)).into_response()
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the metrics listener {listen}"))?;
    let addr = listener.local_addr().context("reading the metrics listener's address")?;
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await;
        if let Err(e) = served {
            tracing::error!(error = %e, "metrics server failed");
        }
    });
    Ok((addr, task))
}

/// Rewrites OpenMetrics text as Prometheus text 0.0.4: counter families are
/// named with their `_total` suffix in `# HELP`/`# TYPE`, and the `# UNIT` and
/// `# EOF` lines, which 0.0.4 lacks, are dropped. Samples are unchanged.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let lines: Vec<&str> = openmetrics.lines().collect();
    let counters: std::collections::HashSet<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in lines {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters.contains(name).then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_get_their_total_name_and_openmetrics_only_lines_go() {
        let om = "# HELP x_events Events.\n# TYPE x_events counter\nx_events_total 3\n\
                  # HELP x_wait_seconds Wait.\n# TYPE x_wait_seconds histogram\n# UNIT x_wait_seconds seconds\n\
                  x_wait_seconds_count 1\n# EOF\n";
        let text = to_prometheus_text(om);
        assert_eq!(
            text,
            "# HELP x_events_total Events.\n# TYPE x_events_total counter\nx_events_total 3\n\
             # HELP x_wait_seconds Wait.\n# TYPE x_wait_seconds histogram\nx_wait_seconds_count 1\n"
        );
    }
}
