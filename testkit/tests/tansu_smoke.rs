//! Smoke test of the Tansu broker process: keyed, idempotent produce and a
//! consumer group read back 1,000 messages in per-key order. Needs
//! `scripts/tansu install` (or `TIDEMARK_TANSU`); fails saying so otherwise.

mod common;

use std::time::{Duration, Instant};

use common::{Plan, round_trip};
use tidemark_testkit::{TansuBroker, unique_group, unique_topic};

#[tokio::test]
async fn tansu_round_trip_keeps_per_key_order() {
    let started = Instant::now();
    let broker = TansuBroker::start().unwrap_or_else(|e| panic!("starting Tansu failed: {e}"));
    eprintln!(
        "Tansu answered on {} after {:?} (data in {})",
        broker.bootstrap(),
        started.elapsed(),
        broker.data_dir().display()
    );
    let plan = Plan {
        bootstrap: broker.bootstrap().to_owned(),
        topic: unique_topic("tansu-smoke"),
        group: unique_group("tansu-smoke"),
        partitions: 4,
        keys: 50,
        per_key: 20,
        timeout: Duration::from_secs(60),
    };
    broker
        .create_topic(&plan.topic, plan.partitions)
        .await
        .unwrap_or_else(|e| panic!("creating the topic failed: {e}\n{plan}"));
    // A failure inside round_trip panics with the plan and what it saw; the
    // broker's log is kept beside it until the broker drops.
    let (produce, consume) = round_trip(&plan).await;
    eprintln!("Tansu round trip of 1,000 messages: produce {produce:?}, consume {consume:?}");
}

/// Fault tests rely on this: what the broker acknowledged survives a SIGKILL
/// and a restart on the same port and data directory.
#[tokio::test]
async fn acknowledged_messages_survive_kill_and_restart() {
    let mut broker = TansuBroker::start().unwrap_or_else(|e| panic!("starting Tansu failed: {e}"));
    let plan = Plan {
        bootstrap: broker.bootstrap().to_owned(),
        topic: unique_topic("tansu-restart"),
        group: unique_group("tansu-restart"),
        partitions: 2,
        keys: 10,
        per_key: 10,
        timeout: Duration::from_secs(60),
    };
    broker
        .create_topic(&plan.topic, plan.partitions)
        .await
        .unwrap_or_else(|e| panic!("creating the topic failed: {e}"));
    common::produce(&plan).await;

    broker.kill().expect("the broker can be killed");
    let restarted = Instant::now();
    broker.restart().unwrap_or_else(|e| panic!("restarting Tansu failed: {e}"));
    eprintln!("Tansu answered again on {} after {:?}", broker.bootstrap(), restarted.elapsed());

    common::consume(&plan).await;
}
