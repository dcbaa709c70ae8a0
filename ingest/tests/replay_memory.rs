//! Measures what the duplicate memory costs: the bytes [`RecentIds`]
//! allocates for one million ids of capacity, counted by a global allocator
//! (the figure docs/ingest.md quotes). Run with `--nocapture` to see it.

#![allow(missing_docs)]

use std::alloc::System;
use std::time::Duration;

use cap::Cap;
use tidemark_ingest::{Claim, RecentIds};

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

#[test]
fn a_million_ids_of_capacity_cost_under_40_bytes_each_and_do_not_grow() {
    let before = ALLOCATOR.allocated();
    let ids = RecentIds::new(Duration::from_secs(3600), 1_000_000);
    let allocated = ALLOCATOR.allocated() - before;
    // Fill it three times over: the generations rotate, nothing grows.
    for n in 0..3_000_000u64 {
        let id = tidemark_ingest::fingerprint(&n.to_le_bytes());
        assert_eq!(ids.claim(id), Claim::New);
        ids.settle(id, true);
    }
    let after_use = ALLOCATOR.allocated() - before;
    println!("duplicate memory for 1,000,000 ids: {allocated} bytes at start, {after_use} after 3,000,000 ids");
    assert!(allocated < 40_000_000, "{allocated} bytes for a million ids");
    assert!(after_use <= allocated + 4096, "the memory grew: {allocated} -> {after_use}");
}
