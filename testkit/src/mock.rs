//! librdkafka's in-process mock cluster, owned by a thread of its own.

use std::sync::mpsc;
use std::thread::JoinHandle;

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

use crate::Error;

/// The mock cluster type [`MockBroker::with_cluster`] lends out.
pub type Cluster = MockCluster<'static, DefaultProducerContext>;

/// Work sent to the thread that owns the cluster.
type Job = Box<dyn FnOnce(&Cluster) + Send>;

/// An in-process Kafka cluster (librdkafka's mock) listening on 127.0.0.1.
///
/// It starts in milliseconds and needs nothing installed. Measured limits
/// (docs/design.md#testing): no admin API (create topics with
/// [`MockBroker::create_topic`]), no topic configs, data beyond 100,000
/// messages or 5 MiB per partition is silently dropped, transactions are not
/// emulated. Use [`TansuBroker`](crate::TansuBroker) for anything beyond that.
///
/// `MockCluster` holds a raw pointer, so it is neither `Send` nor `Sync`, and
/// this crate forbids `unsafe`. A dedicated thread therefore owns it and runs
/// the jobs sent to it; `MockBroker` itself is `Send + Sync + 'static`, so a
/// test can keep it in a struct, an `Arc` or across `.await`s. Dropping it
/// stops the thread and the cluster.
pub struct MockBroker {
    bootstrap: String,
    /// `None` only during drop, to close the channel before joining the thread.
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl MockBroker {
    /// Starts a mock cluster with one broker.
    ///
    /// # Errors
    ///
    /// [`Error::Kafka`] if librdkafka cannot create the cluster,
    /// [`Error::Io`] if the owning thread cannot be spawned.
    pub fn start() -> Result<Self, Error> {
        Self::with_brokers(1)
    }

    /// Starts a mock cluster with `brokers` brokers (for leader-change and
    /// broker-down tests through [`MockBroker::with_cluster`]).
    ///
    /// # Errors
    ///
    /// As [`MockBroker::start`].
    pub fn with_brokers(brokers: i32) -> Result<Self, Error> {
        let (jobs, job_rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("tidemark-mock-broker".to_owned())
            .spawn(move || {
                let cluster = match Cluster::new(brokers) {
                    Ok(cluster) => cluster,
                    Err(e) => {
                        // The receiver only goes away if start() was abandoned.
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                // Runs until every sender is dropped, i.e. until MockBroker drops.
                for job in job_rx {
                    job(&cluster);
                }
            })
            .map_err(|source| Error::Io { what: "spawning the mock cluster's thread".to_owned(), source })?;
        let bootstrap = ready_rx.recv().map_err(|_| Error::MockThreadGone)?.map_err(|source| Error::Kafka {
            what: format!("creating a mock cluster with {brokers} brokers"),
            source,
        })?;
        Ok(Self { bootstrap, jobs: Some(jobs), thread: Some(thread) })
    }

    /// The `bootstrap.servers` value for clients, `127.0.0.1:PORT[,...]`.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// Creates `topic` with `partitions` partitions (replication factor 1).
    /// It is visible to clients as soon as this returns.
    ///
    /// # Errors
    ///
    /// [`Error::Kafka`] if the mock refuses (bad name, bad count);
    /// [`Error::MockThreadGone`] if the owning thread died.
    pub async fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), Error> {
        let name = topic.to_owned();
        let (reply, result) = tokio::sync::oneshot::channel();
        self.send(Box::new(move |cluster: &Cluster| {
            let _ = reply.send(cluster.create_topic(&name, partitions, 1));
        }))?;
        result.await.map_err(|_| Error::MockThreadGone)?.map_err(|source| Error::Kafka {
            what: format!("creating topic {topic} ({partitions} partitions) on mock cluster {}", self.bootstrap),
            source,
        })
    }

    /// Runs `f` with the cluster on its owning thread and returns its result:
    /// the door to error injection (`request_errors`, `broker_down`,
    /// `partition_leader`, ...). Blocks the calling thread while `f` runs;
    /// the mock's calls are in-memory and return at once.
    ///
    /// # Errors
    ///
    /// [`Error::MockThreadGone`] if the owning thread died (also if `f` panics).
    pub fn with_cluster<R, F>(&self, f: F) -> Result<R, Error>
    where
        F: FnOnce(&Cluster) -> R + Send + 'static,
        R: Send + 'static,
    {
        let (reply, result) = mpsc::channel();
        self.send(Box::new(move |cluster: &Cluster| {
            let _ = reply.send(f(cluster));
        }))?;
        result.recv().map_err(|_| Error::MockThreadGone)
    }

    fn send(&self, job: Job) -> Result<(), Error> {
        self.jobs.as_ref().ok_or(Error::MockThreadGone)?.send(job).map_err(|_| Error::MockThreadGone)
    }
}

impl Drop for MockBroker {
    fn drop(&mut self) {
        // Closing the channel ends the thread's loop, which drops the cluster.
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            // A panic there was already reported by the test that caused it.
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for MockBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockBroker").field("bootstrap", &self.bootstrap).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync + 'static>() {}

    #[test]
    fn mock_broker_is_send_and_sync() {
        assert_send_sync::<MockBroker>();
    }

    #[tokio::test]
    async fn starts_creates_topics_and_lends_the_cluster() {
        let broker = MockBroker::start().expect("mock cluster starts");
        assert!(broker.bootstrap().starts_with("127.0.0.1:"), "{broker:?}");
        broker.create_topic("t", 3).await.expect("mock creates topics");
        let bootstrap = broker.with_cluster(|c| c.bootstrap_servers()).expect("thread alive");
        assert_eq!(bootstrap, broker.bootstrap());
    }
}
