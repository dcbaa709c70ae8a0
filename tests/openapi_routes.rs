//! Each OpenAPI spec matches the routes and statuses its server has:
//! `schemas/openapi.v1.yaml` ingest's (`tidemark_ingest::ROUTES`, exercised
//! in `ingest_e2e.rs`), `schemas/openapi.query.v1.yaml` the query service's
//! (`tidemark_query::ROUTES`, exercised in `query_e2e.rs`).

#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeSet;

/// (method, path, status) triples from the spec's `paths` section, read by
/// indentation (2: path, 4: method, 8: status).
fn spec_triples(yaml: &str) -> BTreeSet<(String, String, u16)> {
    let mut out = BTreeSet::new();
    let (mut in_paths, mut path, mut method) = (false, String::new(), String::new());
    for line in yaml.lines() {
        let indent = line.len() - line.trim_start().len();
        let t = line.trim();
        if indent == 0 {
            in_paths = t == "paths:";
            continue;
        }
        if !in_paths || t.is_empty() {
            continue;
        }
        match indent {
            2 => path = t.trim_end_matches(':').to_owned(),
            4 => method = t.trim_end_matches(':').to_owned(),
            8 => {
                if let Some(code) = t.strip_prefix('"').and_then(|r| r.get(..3)).and_then(|c| c.parse().ok()) {
                    out.insert((method.clone(), path.clone(), code));
                }
            }
            _ => {}
        }
    }
    out
}

#[test]
fn ingest_openapi_lists_exactly_the_routes_and_statuses() {
    let yaml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/openapi.v1.yaml")).unwrap();
    assert!(yaml.starts_with("openapi: 3."));
    let spec = spec_triples(&yaml);
    let code: BTreeSet<(String, String, u16)> = tidemark_ingest::ROUTES
        .iter()
        .flat_map(|(m, p, codes)| codes.iter().map(move |c| ((*m).to_owned(), (*p).to_owned(), *c)))
        .collect();
    assert_eq!(spec, code);
}

#[test]
fn query_openapi_lists_exactly_the_routes_and_statuses() {
    let yaml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/openapi.query.v1.yaml")).unwrap();
    assert!(yaml.starts_with("openapi: 3."));
    let spec = spec_triples(&yaml);
    let code: BTreeSet<(String, String, u16)> = tidemark_query::ROUTES
        .iter()
        .flat_map(|(m, p, codes)| codes.iter().map(move |c| ((*m).to_owned(), (*p).to_owned(), *c)))
        .collect();
    assert_eq!(spec, code);
}
