//! Which environment configures the object store (issue 20, "The edges"):
//! an unrelated `ENDPOINT`, `TOKEN` or `ALLOW_HTTP` in the pod must not
//! decide where snapshots go; `TIDEMARK_OBJECT_STORE_*` and `AWS_*` do. Two
//! local HTTP servers stand in for the endpoints: the archive must list
//! through the one configured the documented way, and never reach the other.

use std::ffi::OsString;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tidemark_archiver::storage::Archive;

/// An empty S3 listing, as `ListObjectsV2` answers it.
const EMPTY_LISTING: &str = r#"<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>bucket</Name><Prefix>tidemark/identified/</Prefix><KeyCount>0</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated></ListBucketResult>"#;

/// A server on 127.0.0.1 that answers every request with an empty listing
/// and counts the requests. Returns its address and the count.
fn fake_s3() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = format!("http://{}", listener.local_addr().expect("addr"));
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            counted.fetch_add(1, Ordering::SeqCst);
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{EMPTY_LISTING}",
                EMPTY_LISTING.len()
            );
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    (addr, hits)
}

fn env(vars: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
    vars.iter().map(|(k, v)| (OsString::from(k), OsString::from(v))).collect()
}

#[tokio::test]
async fn unprefixed_endpoint_token_and_allow_http_are_not_read() {
    let (decoy, decoy_hits) = fake_s3();
    let (configured, configured_hits) = fake_s3();
    let vars = env(&[
        // What an unrelated tool in the same pod may set.
        ("ENDPOINT", &decoy),
        ("ALLOW_HTTP", "true"),
        ("TOKEN", "someone-elses-token"),
        ("BUCKET", "elsewhere"),
        // What the operator set for Tidemark.
        ("TIDEMARK_OBJECT_STORE_ENDPOINT", &configured),
        ("TIDEMARK_OBJECT_STORE_ALLOW_HTTP", "true"),
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
        ("AWS_REGION", "us-east-1"),
    ]);
    let archive = Archive::open_with_env("s3://bucket/tidemark", vars).expect("an s3 archive");
    let listed = archive.list_snapshots("identified").await.expect("listing through the configured endpoint");
    assert!(listed.is_empty(), "{listed:?}");
    assert_eq!(decoy_hits.load(Ordering::SeqCst), 0, "the unprefixed ENDPOINT was used");
    assert!(configured_hits.load(Ordering::SeqCst) >= 1, "TIDEMARK_OBJECT_STORE_ENDPOINT was not used");
}

#[tokio::test]
async fn without_allow_http_from_a_prefixed_variable_plain_http_is_refused() {
    let (configured, hits) = fake_s3();
    let vars = env(&[
        ("ALLOW_HTTP", "true"),
        ("AWS_ENDPOINT", &configured),
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
    ]);
    let archive = Archive::open_with_env("s3://bucket/tidemark", vars).expect("an s3 archive");
    let err = archive.list_snapshots("identified").await.expect_err("plain HTTP needs allow_http from our variables");
    assert_eq!(hits.load(Ordering::SeqCst), 0, "no request went out in the clear: {err}");
}
