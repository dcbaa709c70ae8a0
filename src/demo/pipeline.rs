//! The whole pipeline in one process: a Kafka (librdkafka's in-process mock
//! cluster, or a real one), ingest on a loopback port, merger workers of one
//! consumer group, and the archiver for one snapshot at the end. Each service
//! runs through the same library entry point as its own subcommand.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use prometheus_client::registry::Registry;
use tidemark_archiver::snapshot::{Committed, ProfileSpec, SnapshotSpec};
use tidemark_archiver::storage::Archive;
use tidemark_archiver::table::{PartOptions, Profile};
use tidemark_archiver::{ArchiverConfig, ArchiverMetrics};
use tidemark_ingest::{IngestConfig, IngestMetrics};
use tidemark_kafka::Connection;
use tidemark_merger::worker::{self, MergerConfig, MergerMetrics, Topics};
use tidemark_reload::Slot;
use tidemark_schemas::Catalog;
use tidemark_schemas::verify::Verifier;
use tidemark_seal::{ArchiverSigningKey, RecipientPublicKey, StateKeys};
use tidemark_testkit::MockBroker;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What to start.
pub struct Options {
    /// A real Kafka's bootstrap servers; `None` starts the embedded mock cluster.
    pub brokers: Option<String>,
    /// librdkafka options for every client.
    pub kafka_options: Vec<(String, String)>,
    /// Prefix of every topic.
    pub topic_prefix: String,
    /// Partitions of every topic.
    pub partitions: i32,
    /// Merger workers in the group.
    pub mergers: usize,
    /// The key registry file.
    pub registry: PathBuf,
    /// The keys the mergers seal state records with.
    pub state_keys: Arc<StateKeys>,
}

/// The running services.
pub struct Pipeline {
    /// Bootstrap servers of the Kafka in use.
    pub bootstrap: String,
    /// The topics.
    pub topics: Topics,
    /// Where ingest's HTTP API listens.
    pub ingest: SocketAddr,
    /// Each merger worker's metrics, to follow the fold.
    pub mergers: Vec<MergerMetrics>,
    /// Cancels every service.
    pub shutdown: CancellationToken,
    /// The keys state records are sealed with.
    pub state_keys: Arc<StateKeys>,
    services: Vec<(&'static str, JoinHandle<Result<(), String>>)>,
    kafka_options: Vec<(String, String)>,
    /// Kept alive while the services run; dropped last.
    _broker: Option<MockBroker>,
}

impl Pipeline {
    /// Starts Kafka (unless given), creates the topics on the mock, and starts
    /// ingest and the mergers; their metrics go to `registry`.
    ///
    /// # Errors
    /// If the broker, a topic or a service cannot start.
    pub async fn start(opts: Options, registry: &mut Registry) -> anyhow::Result<Self> {
        let topics = Topics::with_prefix(&opts.topic_prefix);
        let (broker, bootstrap) = match &opts.brokers {
            Some(b) => (None, b.clone()),
            None => {
                let broker = MockBroker::start().context("starting the embedded Kafka (librdkafka's mock cluster)")?;
                // The mock has no admin API: the topics are made here, and the
                // services find them as they would on a prepared cluster.
                for topic in topics.edits.iter().chain([&topics.changelog, &topics.state, &topics.dlq]) {
                    broker.create_topic(topic, opts.partitions).await.context("creating the demo topics")?;
                }
                let bootstrap = broker.bootstrap().to_owned();
                (Some(broker), bootstrap)
            }
        };
        let shutdown = CancellationToken::new();
        let catalog = Catalog::builtin().clone();
        let mut services = Vec::new();

        let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
        let addr_tx = Mutex::new(Some(addr_tx));
        let ingest_cfg = IngestConfig {
            kafka: Connection::new(bootstrap.clone(), opts.kafka_options.clone()),
            keys: opts.registry.clone(),
            catalog: catalog.clone(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            // Loopback only: the demo's clients run in this process.
            tls: None,
            insecure_plaintext: false,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            // Every synthetic clinician connects from 127.0.0.1.
            max_connections_per_peer: 1024,
            max_connections: 4096,
            topic_prefix: opts.topic_prefix.clone(),
            partitions: opts.partitions,
            max_body_bytes: 8 * 1024 * 1024,
            max_in_flight_requests: 256,
            max_in_flight_bytes: 256 * 1024 * 1024,
            shutdown_grace: Duration::from_secs(10),
            produce_timeout: Duration::from_secs(10),
            startup_timeout: Duration::from_secs(15),
            replay: tidemark_ingest::ReplayPolicy::default(),
            metrics: IngestMetrics::register(registry),
            on_listening: Some(Arc::new(move |addr| {
                if let Some(tx) = addr_tx.lock().unwrap_or_else(PoisonError::into_inner).take() {
                    let _ = tx.send(addr);
                }
            })),
        };
        let token = shutdown.clone();
        let mut ingest_task =
            tokio::spawn(async move { tidemark_ingest::run(ingest_cfg, token).await.map_err(|e| e.to_string()) });
        let ingest = tokio::select! {
            addr = addr_rx => addr.context("ingest stopped before listening")?,
            ended = &mut ingest_task => anyhow::bail!("ingest did not start: {}", match ended {
                Ok(Err(e)) => e,
                Ok(Ok(())) => "it stopped".to_owned(),
                Err(e) => e.to_string(),
            }),
        };
        services.push(("ingest", ingest_task));

        let verifier = Arc::new(Slot::new(Verifier::new(crate::keyfiles::load_registry(&opts.registry)?)));
        let merger_options = merger_kafka_options(&opts.kafka_options);
        let mut mergers = Vec::new();
        for i in 0..opts.mergers {
            let metrics =
                MergerMetrics::register(registry.sub_registry_with_label(("worker".into(), i.to_string().into())));
            let cfg = MergerConfig {
                kafka: Connection::new(bootstrap.clone(), merger_options.clone()),
                group: format!("{}tidemark-demo-merger", opts.topic_prefix),
                topics: topics.clone(),
                partitions: opts.partitions,
                max_batch_events: 2000,
                max_batch_wait: Duration::from_millis(50),
                lag_interval: Duration::from_secs(1),
                restore_stall_timeout: Duration::from_secs(30),
                startup_timeout: Duration::from_secs(15),
                catalog: Arc::new(catalog.clone()),
                verifier: Arc::clone(&verifier),
                state_keys: Arc::clone(&opts.state_keys),
                trust_unsealed_changelog: false,
                metrics: metrics.clone(),
                status: Arc::default(),
                faults: worker::Faults::default(),
            };
            let token = shutdown.clone();
            services.push((
                "merger",
                tokio::spawn(async move { worker::run(cfg, token).await.map_err(|e| e.to_string()) }),
            ));
            mergers.push(metrics);
        }
        Ok(Self {
            bootstrap,
            topics,
            ingest,
            mergers,
            shutdown,
            state_keys: Arc::clone(&opts.state_keys),
            services,
            kafka_options: opts.kafka_options,
            _broker: broker,
        })
    }

    /// The first service that stopped on its own, with its error.
    pub fn failed_service(&self) -> Option<&'static str> {
        self.services.iter().find(|(_, h)| h.is_finished()).map(|(name, _)| *name)
    }

    /// Events folded by every merger so far.
    pub fn folded(&self) -> u64 {
        self.mergers.iter().map(|m| m.events_folded.get()).sum()
    }

    /// Register conflicts the mergers saw opened so far.
    pub fn conflicts_created(&self) -> u64 {
        self.mergers.iter().map(|m| m.conflicts_created.get()).sum()
    }

    /// The connection every client of the demo reads Kafka through.
    pub fn connection(&self) -> Connection {
        Connection::new(self.bootstrap.clone(), self.kafka_options.clone())
    }

    /// Takes one identified snapshot of the state topic into `archive`.
    ///
    /// # Errors
    /// The snapshot's error.
    pub async fn snapshot(
        &self,
        archive: Archive,
        signer: ArchiverSigningKey,
        recipient: RecipientPublicKey,
        metrics: ArchiverMetrics,
    ) -> anyhow::Result<Committed> {
        let spec = SnapshotSpec {
            topic: self.topics.state.clone(),
            catalog: Catalog::builtin().clone(),
            profiles: vec![ProfileSpec { profile: Profile::Identified, recipients: vec![recipient] }],
            signer: Arc::new(signer),
            state_keys: Arc::clone(&self.state_keys),
            rows_per_part: 250_000,
            part_options: PartOptions::default(),
            stall_timeout: Duration::from_secs(30),
            retain: 3,
            faults: tidemark_archiver::snapshot::Faults::default(),
        };
        let committed: Arc<Mutex<Option<Committed>>> = Arc::default();
        let slot = Arc::clone(&committed);
        let cfg = ArchiverConfig {
            kafka: self.connection(),
            archive,
            spec: Arc::new(spec),
            interval: Duration::from_secs(3600),
            once: true,
            metrics,
            status: Arc::default(),
            on_commit: Some(Arc::new(move |c, _| {
                *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(c.clone());
            })),
        };
        tidemark_archiver::run(cfg, self.shutdown.child_token()).await.context("taking the snapshot")?;
        let taken = committed.lock().unwrap_or_else(PoisonError::into_inner).take();
        taken.context("the archiver returned without committing a snapshot")
    }

    /// Stops every service (ingest drains, mergers commit) and reports the
    /// first that had failed.
    ///
    /// # Errors
    /// A service's error.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        let mut first = None;
        for (name, handle) in self.services {
            let outcome = match handle.await {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => format!("{name} failed: {e}"),
                Err(e) => format!("{name} panicked: {e}"),
            };
            first.get_or_insert(outcome);
        }
        first.map_or(Ok(()), |e| Err(anyhow::anyhow!(e)))
    }
}

/// The demo mergers' client options: a 10 s group session, then the
/// operator's options (which override it).
///
/// Why: a member the coordinator still counts but that no longer heartbeats
/// holds every rebalance of the group until its session expires, 45 s by
/// default, most of the demo's 60 s wait for the mergers. Seen once in CI,
/// on a machine loaded by parallel builds: the mergers stopped folding at a
/// rebalance 4 s in and the next one came 42 s later, so the demo ended with
/// half its events unfolded (it passes in 7 s otherwise). The demo's group
/// is two tasks of one process, so a short session costs nothing; a
/// deployment keeps its own.
fn merger_kafka_options(operator: &[(String, String)]) -> Vec<(String, String)> {
    let mut options = vec![("session.timeout.ms".to_owned(), "10000".to_owned())];
    options.extend(operator.iter().cloned());
    options
}
