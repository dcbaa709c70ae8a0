//! Reading the live state topic back at the end of the demo: the latest view
//! of every patient, as the archiver and `tidemark state` read it.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use tidemark_kafka::Connection;
use tidemark_kafka::scan;
use tidemark_schemas::PatientView;
use tidemark_seal::{RecordKind, StateKeys};

/// Every patient's latest view, and whether the broker had already dropped
/// the start of any partition (the mock keeps 5 MiB or 100,000 records per
/// partition; past that, early views would be missing).
pub struct Views {
    /// By patient id.
    pub views: BTreeMap<String, PatientView>,
    /// Partitions whose first offset is no longer 0.
    pub truncated: Vec<i32>,
}

impl Views {
    /// Events the views account for.
    pub fn events(&self) -> u64 {
        self.views.values().map(|v| v.event_count).sum()
    }
}

/// Reads `topic` up to its current end.
///
/// # Errors
/// If the broker cannot be read, or a record is not sealed by a merger or
/// not a view.
pub fn read(kafka: &Connection, topic: &str, keys: &StateKeys) -> anyhow::Result<Views> {
    let timeout = Duration::from_secs(15);
    let consumer = kafka.reader("tidemark-demo").context("connecting to read the state topic")?;
    let cut = scan::capture_cut(&consumer, topic, timeout).context("reading the state topic's offsets")?;
    let mut views = BTreeMap::new();
    let mut truncated = Vec::new();
    for part in cut {
        let partition = part.partition;
        if part.low > 0 {
            truncated.push(partition);
        }
        let mut forged = None;
        let latest = scan::read_latest(&consumer, topic, part, timeout, |r| {
            let checked = keys.check(RecordKind::State, r.key, r.value, |h| r.header(h));
            if let Err(failure) = checked {
                forged.get_or_insert((r.offset, failure));
            }
            true
        })
        .with_context(|| format!("reading {topic}/{partition}"))?;
        if let Some((offset, failure)) = forged {
            anyhow::bail!("the record at {topic}/{partition} offset {offset} is not a merger's: {failure}");
        }
        for (key, value) in latest {
            let view: PatientView = serde_json::from_slice(&value)
                .with_context(|| format!("a record of {topic}/{partition} is not a patient view"))?;
            views.insert(String::from_utf8_lossy(&key).into_owned(), view);
        }
    }
    Ok(Views { views, truncated })
}
