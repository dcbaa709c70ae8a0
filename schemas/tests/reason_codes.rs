//! The rejection codes an integrator reads about are exactly the ones the code
//! has: docs/events.md's table (code, status, DLQ) and the OpenAPI spec's
//! `Reason` enum both equal `Reason::ALL`. That each code can be produced is
//! tested beside the code (schemas/src/verify/tests.rs, the merger's fold and
//! batch tests).

#![allow(missing_docs)]

use tidemark_schemas::Reason;

fn read(path: &str) -> String {
    let full = format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("reading {full}: {e}"))
}

/// `(code, status, dead-lettered)` for each row of the "Rejections" table.
fn documented_rows(markdown: &str) -> Vec<(String, Option<u16>, bool)> {
    let section = markdown.split("\n## Rejections\n").nth(1).expect("docs/events.md has a Rejections section");
    let section = section.split("\n#").next().unwrap_or(section);
    section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|row| {
            let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
            assert!(cells.len() >= 4, "a row needs code, status, DLQ and meaning: {row}");
            let code = cells[0].trim_matches('`').to_owned();
            let status = match cells[1] {
                "—" => None,
                s => Some(s.parse().unwrap_or_else(|_| panic!("status `{s}` in {row}"))),
            };
            let dlq = match cells[2] {
                "yes" => true,
                "no" => false,
                other => panic!("DLQ column `{other}` in {row}: yes or no"),
            };
            (code, status, dlq)
        })
        .collect()
}

/// The items of `components.schemas.Reason.enum`, a block list.
fn spec_enum(yaml: &str) -> Vec<String> {
    let after = yaml.split("\n    Reason:\n").nth(1).expect("the spec defines components.schemas.Reason");
    let list = after.split("\n      enum:\n").nth(1).expect("Reason has an enum");
    list.lines().map_while(|l| l.strip_prefix("        - ")).map(|c| c.trim().to_owned()).collect()
}

#[test]
fn events_md_lists_exactly_the_reasons_with_their_status_and_dlq() {
    let got = documented_rows(&read("docs/events.md"));
    let want: Vec<(String, Option<u16>, bool)> =
        Reason::ALL.iter().map(|r| (r.as_str().to_owned(), r.http_status(), r.dead_lettered())).collect();
    assert_eq!(got, want, "docs/events.md's Rejections table (left) against Reason::ALL (right)");
}

#[test]
fn openapi_lists_exactly_the_reasons() {
    let got = spec_enum(&read("schemas/openapi.v1.yaml"));
    let want: Vec<String> = Reason::ALL.iter().map(|r| r.as_str().to_owned()).collect();
    assert_eq!(got, want, "schemas/openapi.v1.yaml's Reason enum (left) against Reason::ALL (right)");
}

#[test]
fn merger_md_lists_exactly_the_dead_letter_reasons() {
    let doc = read("docs/merger.md");
    let list = doc.split("`tidemark-dlq-reason` (one of ").nth(1).expect("docs/merger.md lists the DLQ reasons");
    let list = &list[..list.find(':').expect("the list ends with a colon")];
    let got: Vec<String> =
        list.split(',').map(|c| c.trim().trim_matches('`').to_owned()).filter(|c| !c.is_empty()).collect();
    let want: Vec<String> = Reason::ALL.iter().filter(|r| r.dead_lettered()).map(|r| r.as_str().to_owned()).collect();
    assert_eq!(got, want, "docs/merger.md (left) against the dead-lettered reasons (right)");
}
