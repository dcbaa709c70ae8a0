//! One patient's latest view from the state topic, without a consumer group.
//!
//! Key decision: the merger writes a patient's view to the partition number
//! its events came from, and ingest keys events by patient id with a fixed
//! partitioner (librdkafka's `consistent_random`: CRC-32 of the key, pinned in
//! ingest's producer). So the patient's partition can be computed, and only
//! that partition is read, up to its end as it was when the lookup started.
//! A deployment that sets another `partitioner` on ingest passes the same
//! `--kafka-option partitioner=...` here; `--all-partitions` reads them all.

use std::time::Duration;

use anyhow::Context as _;
use tidemark_kafka::Connection;
use tidemark_kafka::scan::{self, PartitionCut, Record};

/// How ingest chose a patient's partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Partitioner {
    /// librdkafka's `consistent` / `consistent_random` (the default): CRC-32 of the key.
    Crc32,
    /// `murmur2` / `murmur2_random`: the Java producer's default partitioner.
    Murmur2,
}

impl Partitioner {
    /// The partitioner named by a `partitioner` librdkafka option, if any
    /// (absent: librdkafka's default, which ingest pins).
    ///
    /// # Errors
    /// For partitioners that do not place a key deterministically (`random`)
    /// or that this lookup does not compute (`fnv1a*`).
    pub fn from_options(options: &[(String, String)]) -> anyhow::Result<Self> {
        match options.iter().rev().find(|(k, _)| k == "partitioner").map(|(_, v)| v.as_str()) {
            None | Some("consistent" | "consistent_random") => Ok(Partitioner::Crc32),
            Some("murmur2" | "murmur2_random") => Ok(Partitioner::Murmur2),
            Some(other) => anyhow::bail!(
                "cannot compute the partition for partitioner `{other}`: use --all-partitions to read every partition"
            ),
        }
    }

    /// The partition of `key` among `partitions` (> 0), as librdkafka computes it.
    pub fn partition(self, key: &[u8], partitions: usize) -> usize {
        let hash = match self {
            Partitioner::Crc32 => crc32fast::hash(key),
            Partitioner::Murmur2 => murmur2(key) & 0x7fff_ffff,
        };
        hash as usize % partitions
    }
}

/// Kafka's murmur2 (the Java client's `Utils.murmur2`): seed 0x9747b28c,
/// 4-byte little-endian blocks, then the tail, then the final mix.
pub fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let blocks = data.chunks_exact(4);
    let tail = blocks.remainder();
    for block in blocks {
        let mut k = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^ (h >> 15)
}

/// Where to look.
#[derive(Clone, Copy, Debug)]
pub enum Locate {
    /// Compute the partition with this partitioner.
    Partition(Partitioner),
    /// Read every partition.
    All,
}

/// The outcome of a lookup.
#[derive(Debug)]
pub struct Found {
    /// The partitions read, with the offsets read up to.
    pub read: Vec<(i32, i64)>,
    /// The latest value of the key (`None`: no record, or a tombstone last).
    pub value: Option<Vec<u8>>,
}

/// Reads the latest record of `key` in `topic` for which `keep` is true
/// (the others are passed over, as [`scan::read_latest`] does).
///
/// # Errors
/// If the topic is missing, the broker does not answer, or reading stalls
/// for `timeout`.
pub fn latest(
    kafka: &Connection,
    topic: &str,
    key: &str,
    locate: Locate,
    timeout: Duration,
    mut keep: impl FnMut(i32, &Record<'_>) -> bool,
) -> anyhow::Result<Found> {
    let consumer = kafka.reader("tidemark-state").context("connecting to Kafka")?;
    let cut =
        scan::capture_cut(&consumer, topic, timeout).with_context(|| format!("reading the offsets of {topic}"))?;
    let chosen: Vec<PartitionCut> = match locate {
        Locate::All => cut,
        Locate::Partition(p) => {
            let index = p.partition(key.as_bytes(), cut.len());
            vec![cut[index]]
        }
    };
    let mut value = None;
    for &part in &chosen {
        scan::scan_partition(&consumer, topic, part, timeout, |r: Record<'_>| {
            if r.key == key.as_bytes() && keep(part.partition, &r) {
                value = r.value.map(<[u8]>::to_vec);
            }
            Ok::<_, tidemark_kafka::KafkaFailure>(())
        })
        .with_context(|| format!("reading {topic}/{}", part.partition))?;
    }
    Ok(Found { read: chosen.iter().map(|c| (c.partition, c.end)).collect(), value })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rdkafka::ClientConfig;
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use tidemark_testkit::MockBroker;

    use super::*;

    /// librdkafka's test vectors for its Java-compatible murmur2 (`rdmurmur2.c`),
    /// covering every tail length and the empty key.
    #[test]
    fn murmur2_matches_librdkafkas_test_vectors() {
        let cases: [(&[u8], u32); 7] = [
            (b"kafka", 0xd067_cf64),
            (b"giberish123456789", 0x8f55_2b0c),
            (b"1234", 0x9fc9_7b14),
            (b"234", 0xe7c0_09ca),
            (b"34", 0x8739_30da),
            (b"4", 0x5a4b_5ca1),
            (b"", 0x106e_08d9),
        ];
        for (input, want) in cases {
            assert_eq!(murmur2(input), want, "{}", String::from_utf8_lossy(input));
        }
    }

    /// librdkafka is the reference: keys produced with each partitioner land
    /// where [`Partitioner::partition`] says.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn partitions_match_librdkafkas_partitioners() {
        let broker = MockBroker::start().expect("mock cluster");
        for (name, ours) in [("consistent_random", Partitioner::Crc32), ("murmur2_random", Partitioner::Murmur2)] {
            let topic = format!("lookup-{name}");
            broker.create_topic(&topic, 7).await.expect("topic");
            let producer: FutureProducer = ClientConfig::new()
                .set("bootstrap.servers", broker.bootstrap())
                .set("partitioner", name)
                .create()
                .expect("producer");
            let mut seen = BTreeMap::new();
            for i in 0..200 {
                let key = format!("pt-{i:06}");
                let record = FutureRecord::to(&topic).key(&key).payload("x");
                let delivery = producer.send(record, Duration::from_secs(5)).await.expect("delivered");
                seen.insert(key, delivery.partition);
            }
            for (key, partition) in &seen {
                assert_eq!(ours.partition(key.as_bytes(), 7) as i32, *partition, "{name} {key}");
            }
            let opts = vec![("partitioner".to_owned(), name.to_owned())];
            assert_eq!(Partitioner::from_options(&opts).expect("known"), ours);
        }
        assert_eq!(Partitioner::from_options(&[]).expect("default"), Partitioner::Crc32);
        let random = vec![("partitioner".to_owned(), "random".to_owned())];
        assert!(Partitioner::from_options(&random).expect_err("random").to_string().contains("--all-partitions"));
    }
}
