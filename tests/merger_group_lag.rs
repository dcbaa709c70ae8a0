//! A stuck consumer group must be visible: when the member that holds the
//! partitions is dead but still counted in the group, every live merger's
//! own lag reads nothing while the backlog grows (a chaos run saw 11,250
//! acknowledged events wait behind a lag of 0). The group's lag, read from
//! its committed offsets on every partition, must show the backlog on a live
//! member that holds nothing, and `partition_assigned` must show that
//! nobody alive holds those partitions.
//!
//! The dead member is made to stay in the group the way any Kafka allows:
//! it joins with a session timeout and poll interval of 5 minutes, then is
//! killed with SIGKILL, so the group waits for it long past this test.

mod common;

use std::path::Path;
use std::time::Duration;

use common::pipeline::{produce, workload};
use common::service::{Service, tidemark_service};
use common::{data, eventually, s};
use tidemark_testkit::{TansuBroker, unique_group, unique_topic};

fn merger(bootstrap: &str, prefix: &str, group: &str, dir: &Path, name: &str, extra: &[&str]) -> Service {
    let registry = data("test-registry.toml");
    let args = ["merger", "--brokers", bootstrap, "--keys", s(&registry)]
        .iter()
        .chain(&["--topic-prefix", prefix, "--group", group, "--partitions", "4"])
        .chain(&["--metrics-listen", "127.0.0.1:0", "--max-batch-wait-ms", "20"])
        .chain(extra)
        .map(|a| (*a).to_owned())
        .collect();
    tidemark_service(name, args, dir).started()
}

/// `name{partition="N"} V` samples of one family, by partition.
fn by_partition(text: &str, name: &str) -> Vec<(i32, f64)> {
    text.lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix('{'))
        .filter_map(|rest| {
            let (labels, v) = rest.split_once("} ")?;
            let p = labels.split(',').find_map(|kv| kv.strip_prefix("partition=\""))?.trim_end_matches('"');
            Some((p.parse().ok()?, v.trim().parse().ok()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backlog_held_by_a_dead_member_shows_in_the_group_lag_of_a_live_one() {
    let broker = TansuBroker::start().expect("tansu starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let prefix = format!("{}.", unique_topic("stuck"));
    let group = unique_group("stuck");
    let edits = format!("{prefix}tidemark.edits.v1");
    let long_session = [
        "--kafka-option",
        "session.timeout.ms=300000",
        "--kafka-option",
        "max.poll.interval.ms=300000",
        "--kafka-option",
        "heartbeat.interval.ms=1000",
    ];
    let mut holder = merger(broker.bootstrap(), &prefix, &group, dir.path(), "holder", &long_session);
    eventually("the holder is assigned every partition and folds the first events", Duration::from_secs(90), || {
        let text = holder.scrape();
        let assigned = by_partition(&text, "tidemark_merger_partition_assigned");
        let lag = by_partition(&text, "tidemark_merger_group_lag_messages");
        let done = assigned.len() == 4 && lag.len() == 4 && lag.iter().all(|(_, v)| *v == 0.0);
        if done { Ok(()) } else { Err(format!("assigned {assigned:?}, group lag {lag:?}")) }
    });
    let health: serde_json::Value =
        serde_json::from_str(&common::http_get(&holder.metrics_addr(), "/healthz")).expect("health JSON");
    assert_eq!((health["state"].as_str(), health["assigned_partitions"].as_u64()), (Some("ok"), Some(4)), "{health}");
    produce(broker.bootstrap(), &edits, &workload(20, 2, 31)).await;
    eventually("the holder folds and commits 40 events", Duration::from_secs(60), || {
        let lag = by_partition(&holder.scrape(), "tidemark_merger_group_lag_messages");
        if lag.len() == 4 && lag.iter().all(|(_, v)| *v == 0.0) { Ok(()) } else { Err(format!("{lag:?}")) }
    });
    holder.kill();

    let mut live = merger(broker.bootstrap(), &prefix, &group, dir.path(), "live", &[]);
    produce(broker.bootstrap(), &edits, &workload(20, 5, 32)).await;
    eventually(
        "the live member reports the group's backlog of 100 on partitions it does not hold",
        Duration::from_secs(60),
        || {
            let text = live.scrape();
            let lag = by_partition(&text, "tidemark_merger_group_lag_messages");
            let assigned = by_partition(&text, "tidemark_merger_partition_assigned");
            let own = by_partition(&text, "tidemark_merger_consumer_lag_messages");
            let total: f64 = lag.iter().map(|(_, v)| v).sum();
            if lag.len() == 4 && (100.0..=140.0).contains(&total) && assigned.is_empty() && own.is_empty() {
                Ok(())
            } else {
                Err(format!("group lag {lag:?}, assigned {assigned:?}, own lag {own:?}"))
            }
        },
    );
}
