//! Smoke test of the in-process mock broker: keyed, idempotent produce and a
//! consumer group read back 1,000 messages in per-key order.

mod common;

use std::time::Duration;

use common::{Plan, round_trip};
use tidemark_testkit::{MockBroker, unique_group, unique_topic};

#[tokio::test]
async fn mock_round_trip_keeps_per_key_order() {
    let broker = MockBroker::start().expect("the mock cluster starts");
    let plan = Plan {
        bootstrap: broker.bootstrap().to_owned(),
        topic: unique_topic("mock-smoke"),
        group: unique_group("mock-smoke"),
        partitions: 4,
        keys: 50,
        per_key: 20,
        timeout: Duration::from_secs(30),
    };
    broker
        .create_topic(&plan.topic, plan.partitions)
        .await
        .unwrap_or_else(|e| panic!("creating the topic failed: {e}\n{plan}"));
    let (produce, consume) = round_trip(&plan).await;
    eprintln!("mock round trip of 1,000 messages: produce {produce:?}, consume {consume:?}");
}
