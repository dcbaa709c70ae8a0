//! How every Tidemark client reaches Kafka.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::BaseConsumer;

use crate::KafkaFailure;

/// Where the brokers are and how to talk to them: the bootstrap servers and
/// the operator's librdkafka options (`security.protocol`, `ssl.*`,
/// `sasl.*`, tuning), applied to every client the services build.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Connection {
    /// Kafka bootstrap servers (`host:port,...`).
    pub brokers: String,
    /// librdkafka options passed through, in the order given; a later one wins.
    pub options: Vec<(String, String)>,
}

impl Connection {
    /// A connection to `brokers` with the operator's `options`.
    pub fn new(brokers: impl Into<String>, options: Vec<(String, String)>) -> Self {
        Self { brokers: brokers.into(), options }
    }

    /// A client config with the brokers and the operator's options.
    pub fn client_config(&self) -> ClientConfig {
        self.client_config_with(&[])
    }

    /// As [`Self::client_config`], with `tunables` (Tidemark's defaults for
    /// this client) set before the operator's options, so that an operator's
    /// `--kafka-option` wins over them.
    pub fn client_config_with(&self, tunables: &[(&str, &str)]) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        for (k, v) in tunables {
            c.set(*k, *v);
        }
        for (k, v) in &self.options {
            c.set(k, v);
        }
        c
    }

    /// A producer config whose acknowledgement means the record is durable
    /// and written once: `tunables` and the operator's options first, then
    /// `acks=all` and idempotence (and `delivery_timeout` as
    /// `message.timeout.ms`, when given) set last, so no option can weaken
    /// them. Ingest answers 202 and the merger commits offsets on this
    /// acknowledgement alone.
    pub fn durable_producer(&self, tunables: &[(&str, &str)], delivery_timeout: Option<Duration>) -> ClientConfig {
        let mut c = self.client_config_with(tunables);
        c.set("acks", "all").set("enable.idempotence", "true");
        if let Some(timeout) = delivery_timeout {
            c.set("message.timeout.ms", timeout.as_millis().to_string());
        }
        c
    }

    /// A consumer that reads by assignment only: it never joins a group and
    /// never commits, so snapshots, restores and lookups leave no trace on
    /// the cluster. `group_id` only names the client in broker logs.
    ///
    /// Fetches do not wait for more data (a reader up to a cut wants what is
    /// already there). A reader that falls behind its prefetch (its queue
    /// over librdkafka's thresholds) fetches again 10 ms after the queue
    /// drains, not librdkafka's default 1 s: with the default, the query
    /// service's catch-up stood idle for most of its time (docs/benchmarks.md,
    /// "Query service"). Never committing and starting from the oldest record
    /// are set after the operator's options, so no option changes them.
    ///
    /// # Errors
    /// [`KafkaFailure::Kafka`] if the client cannot be created.
    pub fn reader(&self, group_id: &str) -> Result<BaseConsumer, KafkaFailure> {
        self.reader_config(group_id).create().map_err(KafkaFailure::kafka("creating a partition reader"))
    }

    /// The config [`Self::reader`] creates its consumer from.
    pub fn reader_config(&self, group_id: &str) -> ClientConfig {
        let mut c = self.client_config_with(&[
            ("fetch.wait.max.ms", "20"),
            ("fetch.max.bytes", "67108864"),
            ("max.partition.fetch.bytes", "16777216"),
            ("fetch.queue.backoff.ms", "10"),
        ]);
        // A start offset the retention already dropped must mean "from the
        // oldest record", never "from the end": that would be an empty read.
        c.set("group.id", group_id)
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false");
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection() -> Connection {
        Connection::new(
            "127.0.0.1:9",
            [("linger.ms", "50"), ("acks", "1"), ("enable.idempotence", "false"), ("message.timeout.ms", "1")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .to_vec(),
        )
    }

    #[test]
    fn an_operator_option_overrides_a_tunable_but_not_durability() {
        let c = connection().durable_producer(&[("linger.ms", "5"), ("compression.type", "zstd")], None);
        assert_eq!(c.get("linger.ms"), Some("50"), "the operator's tuning wins over Tidemark's default");
        assert_eq!(c.get("compression.type"), Some("zstd"), "a default the operator did not set stays");
        assert_eq!(c.get("acks"), Some("all"), "durability is not the operator's to weaken");
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!(c.get("message.timeout.ms"), Some("1"), "no delivery timeout given: the option stands");
    }

    #[test]
    fn the_delivery_timeout_wins_over_an_operator_option() {
        let c = connection().durable_producer(&[], Some(Duration::from_millis(10_000)));
        assert_eq!(c.get("message.timeout.ms"), Some("10000"));
    }

    #[test]
    fn a_reader_keeps_its_stop_rule_whatever_the_options() {
        let mut conn = connection();
        conn.options.push(("enable.auto.commit".into(), "true".into()));
        conn.options.push(("fetch.wait.max.ms".into(), "500".into()));
        conn.options.push(("auto.offset.reset".into(), "latest".into()));
        let c = conn.reader_config("probe");
        assert_eq!(c.get("auto.offset.reset"), Some("earliest"), "a reader never skips to the end");
        assert_eq!(c.get("enable.auto.commit"), Some("false"), "a reader never commits");
        assert_eq!(c.get("fetch.wait.max.ms"), Some("500"), "tuning stays the operator's");
        assert_eq!(c.get("group.id"), Some("probe"));
        assert_eq!(c.get("fetch.queue.backoff.ms"), Some("10"), "a reader behind its prefetch does not idle");
    }
}
