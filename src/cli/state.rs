//! `tidemark state PATIENT_ID`: the latest view of one patient from the state
//! topic, printed exactly as `tidemark fold` prints it. For integrators it
//! gives the `version` to send as `observed`; for operators it checks live
//! state against the reference fold. Exit 1 when the patient has no view.
//!
//! Only records sealed by a merger (their MAC checks under `--state-key`)
//! count: the others are passed over with a warning that says where they
//! are, so a forged record can neither show a false view nor hide the real
//! one while that is still in the topic.

use std::time::Duration;

use anyhow::Context as _;
use std::path::PathBuf;

use clap::Args;
use tidemark_schemas::PatientView;
use tidemark_seal::{MacFailure, RecordKind};

use super::Outcome;
use super::config::KafkaArgs;
use crate::lookup::{self, Locate, Partitioner};

#[derive(Debug, Args)]
pub struct StateArgs {
    #[command(flatten)]
    kafka: KafkaArgs,
    /// The patient id (the events' `patient_id`).
    patient_id: String,
    /// State key file(s) (`tidemark keys generate --kind state`), as the
    /// mergers have them.
    #[arg(long = "state-key", env = "TIDEMARK_STATE_KEY", value_name = "FILE", required = true, value_delimiter = ',')]
    state_keys: Vec<PathBuf>,
    /// Read every partition instead of computing the patient's (for an
    /// ingest configured with a partitioner this command does not compute).
    #[arg(long)]
    all_partitions: bool,
    /// How long reading may stall before giving up.
    #[arg(long, default_value_t = 30_000)]
    timeout_ms: u64,
}

pub fn run(args: StateArgs) -> anyhow::Result<Outcome> {
    let options = args.kafka.options();
    let locate =
        if args.all_partitions { Locate::All } else { Locate::Partition(Partitioner::from_options(&options)?) };
    let topic = format!("{}{}", args.kafka.topic_prefix, tidemark_schemas::STATE_TOPIC);
    let keys = tidemark_seal::load_state_keys(&args.state_keys).context("loading --state-key")?;
    let mut passed_over: Vec<(i32, i64, MacFailure)> = Vec::new();
    let found = lookup::latest(
        &args.kafka.connection(),
        &topic,
        &args.patient_id,
        locate,
        Duration::from_millis(args.timeout_ms),
        |partition, r| {
            let checked = keys.check(RecordKind::State, r.key, r.value, |h| r.header(h));
            checked.map_err(|failure| passed_over.push((partition, r.offset, failure))).is_ok()
        },
    )?;
    for (partition, offset, failure) in &passed_over {
        eprintln!("warning: passed over the record at {topic}/{partition} offset {offset}: {failure}");
    }
    let Some(bytes) = found.value else {
        let read: Vec<String> = found.read.iter().map(|(p, end)| format!("{p} (offsets up to {end})")).collect();
        eprintln!("no state view for patient {} in {topic}; read partition {}", args.patient_id, read.join(", "));
        return Ok(Outcome::SomeInputFailed);
    };
    let view: PatientView = serde_json::from_slice(&bytes)
        .with_context(|| format!("the state record of patient {} in {topic} is not a view", args.patient_id))?;
    println!("{}", serde_json::to_string(&view).context("encoding the view")?);
    Ok(Outcome::Ok)
}
