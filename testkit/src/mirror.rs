//! A stand-in for MirrorMaker 2 in the multi-region tests: copies every
//! record of one cluster's topic to another cluster's topic, keeping key,
//! value, headers and partition number, and can be paused (the regions cut
//! off from each other) and resumed (the partition heals).
//!
//! It keeps its position in memory only and acknowledges nothing back:
//! enough to stand in for a mirror that resumes where it stopped, which is
//! what MirrorMaker 2's own offset tracking gives. Records are produced
//! idempotently with `acks=all`, and a record the target never acknowledged
//! stops the mirror with an error ([`Mirror::stop`] returns it), so a test
//! never passes on a mirror that silently dropped data.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::Message as _;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer as _, ProducerContext};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};

use crate::Error;

/// A running mirror; stops when dropped (or with [`Mirror::stop`]).
pub struct Mirror {
    /// [`RUNNING`], [`PAUSING`] or [`PAUSED`].
    paused: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
    copied: Arc<AtomicU64>,
    failure: Arc<std::sync::Mutex<Option<String>>>,
    thread: Option<JoinHandle<Result<(), String>>>,
}

impl Mirror {
    /// Starts copying `partitions` partitions of `from_topic` on
    /// `from_bootstrap`, from their start, to the same partitions of
    /// `to_topic` on `to_bootstrap` (which must exist with as many). Starts
    /// paused when `paused`.
    ///
    /// # Errors
    /// [`Error::Kafka`] when a client cannot be made.
    pub fn start(
        (from_bootstrap, from_topic): (&str, &str),
        (to_bootstrap, to_topic): (&str, &str),
        partitions: i32,
        paused: bool,
    ) -> Result<Self, Error> {
        let kafka = |what: String| move |source| Error::Kafka { what, source };
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", from_bootstrap)
            .set("group.id", "testkit-mirror")
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "20")
            // A position the source no longer has is an error, never a
            // silent jump to the end (records skipped).
            .set("auto.offset.reset", "error")
            .create()
            .map_err(kafka(format!("creating the mirror's consumer on {from_bootstrap}")))?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(from_topic, p, Offset::Beginning)
                .map_err(kafka(format!("listing {from_topic}/{p}")))?;
        }
        consumer.assign(&tpl).map_err(kafka(format!("assigning {from_topic}")))?;
        let copied = Arc::new(AtomicU64::new(0));
        let producer: BaseProducer<Delivery> = ClientConfig::new()
            .set("bootstrap.servers", to_bootstrap)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .create_with_context(Delivery { failed: std::sync::Mutex::default(), delivered: Arc::clone(&copied) })
            .map_err(kafka(format!("creating the mirror's producer on {to_bootstrap}")))?;
        let paused = Arc::new(AtomicU8::new(if paused { PAUSED } else { RUNNING }));
        let stop = Arc::new(AtomicBool::new(false));
        let to_topic = to_topic.to_owned();
        let failure = Arc::new(std::sync::Mutex::new(None));
        let (p, s, f) = (Arc::clone(&paused), Arc::clone(&stop), Arc::clone(&failure));
        let thread = std::thread::spawn(move || {
            let result = copy(&consumer, &producer, &to_topic, &p, &s);
            if let Err(e) = &result {
                *f.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e.clone());
            }
            result
        });
        Ok(Self { paused, stop, copied, failure, thread: Some(thread) })
    }

    /// Why the mirror stopped on its own, if it did: a test waiting for
    /// the regions to converge checks it, rather than time out.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Stops copying, and returns once the copy loop has stopped and every
    /// record it copied is acknowledged: a record written to the source
    /// after this returns is not copied until [`Mirror::resume`].
    ///
    /// # Panics
    /// When the mirror stopped on an error, or did not pause within two
    /// minutes: a test must never run its "apart" phase with a live mirror.
    pub fn pause(&self) {
        let _ = self.paused.compare_exchange(RUNNING, PAUSING, Ordering::SeqCst, Ordering::SeqCst);
        let give_up = std::time::Instant::now() + Duration::from_secs(120);
        while self.paused.load(Ordering::SeqCst) != PAUSED
            && self.thread.as_ref().is_some_and(|t| !t.is_finished())
            && std::time::Instant::now() < give_up
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        let failure = self.failure();
        assert!(
            self.paused.load(Ordering::SeqCst) == PAUSED && failure.is_none(),
            "the mirror did not pause: {}",
            failure.as_deref().unwrap_or("not within two minutes")
        );
    }

    /// Copies again, from where it stopped.
    pub fn resume(&self) {
        self.paused.store(RUNNING, Ordering::SeqCst);
    }

    /// Records the target has acknowledged so far.
    pub fn copied(&self) -> u64 {
        self.copied.load(Ordering::SeqCst)
    }

    /// Stops the mirror; its error, if it stopped on one.
    ///
    /// # Errors
    /// What stopped it: a record the target did not acknowledge.
    pub fn stop(mut self) -> Result<(), String> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().map_or(Ok(()), |t| t.join().unwrap_or_else(|_| Err("the mirror panicked".into())))
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The mirror copies.
const RUNNING: u8 = 0;
/// A pause is asked for: the loop flushes, then says [`PAUSED`].
const PAUSING: u8 = 1;
/// The loop copies nothing until resumed.
const PAUSED: u8 = 2;

/// The copy loop: a record at a time, flushed whenever the source is idle
/// or the mirror pauses, so a paused mirror has delivered all it read.
fn copy(
    consumer: &BaseConsumer,
    producer: &BaseProducer<Delivery>,
    to_topic: &str,
    paused: &AtomicU8,
    stop: &AtomicBool,
) -> Result<(), String> {
    let flush = |why: &str| {
        producer.flush(Duration::from_secs(60)).map_err(|e| format!("{why}: {e}"))?;
        producer.context().failed().map_or(Ok(()), |e| Err(format!("a record was not acknowledged: {e}")))
    };
    let mut unflushed = false;
    while !stop.load(Ordering::SeqCst) {
        if paused.load(Ordering::SeqCst) != RUNNING {
            if unflushed {
                flush("flushing at a pause")?;
                unflushed = false;
            }
            let _ = paused.compare_exchange(PAUSING, PAUSED, Ordering::SeqCst, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        let Some(polled) = consumer.poll(Duration::from_millis(50)) else {
            if unflushed {
                flush("flushing while idle")?;
                unflushed = false;
            }
            continue;
        };
        let msg = match polled {
            Ok(msg) => msg,
            Err(e) => {
                use rdkafka::types::RDKafkaErrorCode::{AutoOffsetReset, OffsetOutOfRange};
                if matches!(e.rdkafka_error_code(), Some(AutoOffsetReset | OffsetOutOfRange)) {
                    return Err(format!("the source lost the mirror's position: {e}"));
                }
                continue; // a source broker restarting: librdkafka recovers
            }
        };
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(to_topic).partition(msg.partition());
        if let Some(key) = msg.key() {
            record = record.key(key);
        }
        if let Some(value) = msg.payload() {
            record = record.payload(value);
        }
        if let Some(headers) = msg.headers() {
            record = record.headers(headers.detach());
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    r,
                )) => {
                    record = r;
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => return Err(format!("sending to {to_topic}: {e}")),
            }
        }
        producer.poll(Duration::ZERO);
        unflushed = true;
    }
    flush("flushing at the stop")
}

/// Counts acknowledged records and remembers the first delivery failure.
struct Delivery {
    failed: std::sync::Mutex<Option<String>>,
    delivered: Arc<AtomicU64>,
}

impl Delivery {
    fn failed(&self) -> Option<String> {
        self.failed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

impl ClientContext for Delivery {}

impl ProducerContext for Delivery {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, (): ()) {
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::SeqCst);
            }
            Err((e, _)) => {
                self.failed
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .get_or_insert_with(|| e.to_string());
            }
        }
    }
}
