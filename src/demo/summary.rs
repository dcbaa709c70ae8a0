//! The demo's summary: what was sent, folded and archived, the checks that
//! tie them together, one conflicted patient, and the commands to go further.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use tidemark_archiver::snapshot::Committed;
use tidemark_crdt::EXACT_LIMIT;
use tidemark_schemas::{FieldView, PatientView};

use super::setup::DemoDir;
use super::views::Views;
use crate::load::{Percentiles, Totals};

/// Everything the run measured.
pub struct Summary {
    /// The demo directory.
    pub dir: DemoDir,
    /// Whether Kafka was the embedded mock (its data is gone after the run).
    pub embedded: bool,
    /// The Kafka used.
    pub bootstrap: String,
    /// The topics' prefix.
    pub topic_prefix: String,
    /// What clinicians sent and ingest answered.
    pub totals: Totals,
    /// How long clinicians sent.
    pub load_time: Duration,
    /// Ingest request latency.
    pub latency: Percentiles,
    /// The state topic at the end.
    pub views: Views,
    /// Whether those views equal `tidemark fold` of the accepted envelopes.
    pub matches_reference: bool,
    /// Register conflicts the mergers counted as opened.
    pub conflicts_surfaced: u64,
    /// Records in the dead-letter topic.
    pub dlq: u64,
    /// The snapshot.
    pub committed: Committed,
    /// Whether verification also decrypted every page.
    pub pages_checked: bool,
}

/// Writes the views as `tidemark fold` prints them: one JSON object a line, by patient id.
///
/// # Errors
/// If the file cannot be written.
pub fn write_views(path: &Path, views: &BTreeMap<String, PatientView>) -> anyhow::Result<()> {
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = BufWriter::new(file);
    for view in views.values() {
        serde_json::to_writer(&mut out, view).context("encoding a view")?;
        out.write_all(b"\n").with_context(|| format!("writing {}", path.display()))?;
    }
    out.flush().with_context(|| format!("writing {}", path.display()))
}

impl Summary {
    /// Open register conflicts in the final views.
    pub fn open_conflicts(&self) -> u64 {
        self.views.views.values().map(|v| u64::from(v.open_conflicts)).sum()
    }

    /// What is wrong with the run, if anything: every accepted event must be
    /// in the state topic, nothing may have been dropped by the broker, and
    /// the snapshot must hold every patient and verify to the last page.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let folded = self.views.events();
        if self.totals.accepted == 0 {
            out.push("ingest accepted no event".to_owned());
        }
        if !self.matches_reference {
            out.push("the live state views differ from `tidemark fold` of the accepted envelopes".to_owned());
        }
        // Counts are exact up to EXACT_LIMIT events a patient (a sketch above).
        let exact = self.views.views.values().all(|v| v.event_count <= EXACT_LIMIT as u64);
        if exact && folded != self.totals.accepted {
            out.push(format!(
                "the state topic accounts for {folded} events but ingest accepted {}",
                self.totals.accepted
            ));
        }
        if !self.views.truncated.is_empty() {
            out.push(format!(
                "the broker dropped the oldest records of state partitions {:?} (the mock keeps 5 MiB per partition): \
                 run shorter or with more --partitions",
                self.views.truncated
            ));
        }
        if self.committed.manifest.rows != self.views.views.len() as u64 {
            out.push(format!(
                "the snapshot has {} rows for {} patients",
                self.committed.manifest.rows,
                self.views.views.len()
            ));
        }
        if !self.pages_checked {
            out.push("the snapshot's pages were not checked".to_owned());
        }
        out
    }

    /// The summary as printed.
    pub fn render(&self, exe: &str) -> String {
        let mut s = String::new();
        let t = &self.totals;
        let secs = self.load_time.as_secs_f64();
        let folded = self.views.events();
        let open = self.open_conflicts();
        let conflicted = self.views.views.values().filter(|v| v.open_conflicts > 0).count();
        let m = &self.committed.manifest;
        let snapshot_dir = self.dir.archive().join("identified").join(&m.snapshot_id);
        let _ = writeln!(s, "\n== Tidemark demo summary ==");
        let _ = writeln!(
            s,
            "events       sent {}, accepted {}, refused {}: {:.0} events/s over {:.1} s; ingest p50 {:.1} ms, p99 {:.1} ms",
            t.sent,
            t.accepted,
            t.failed(),
            t.accepted as f64 / secs,
            secs,
            self.latency.p50_ms,
            self.latency.p99_ms
        );
        let _ = writeln!(
            s,
            "folded       {folded} events into {} patient views in the state topic ({}); {}",
            self.views.views.len(),
            if folded == t.accepted { "= accepted" } else { "NOT equal to accepted" },
            if self.matches_reference {
                "identical to `tidemark fold` of the accepted envelopes"
            } else {
                "DIFFERENT from `tidemark fold` of the accepted envelopes"
            }
        );
        let _ = writeln!(
            s,
            "conflicts    {} surfaced by the mergers; {} resolved by later edits that saw them; {open} still open in {conflicted} patients",
            self.conflicts_surfaced,
            self.conflicts_surfaced.saturating_sub(open)
        );
        let _ = writeln!(s, "dead letters {}", self.dlq);
        let _ = writeln!(
            s,
            "snapshot     {} rows in {} parts, {} bytes encrypted; verified: manifest signature, part hashes{}",
            m.rows,
            m.parts.len(),
            self.committed.bytes,
            if self.pages_checked { ", every page decrypted" } else { "" }
        );
        let _ = writeln!(s, "             {}", snapshot_dir.display());
        let _ = writeln!(
            s,
            "files        {} (accepted envelopes), {} (live views)",
            self.dir.envelopes().display(),
            self.dir.state().display()
        );
        if let Some(view) = self.example() {
            let _ = writeln!(s, "\nPatient {} has {} open conflicts:", view.patient_id, view.open_conflicts);
            for (path, field) in &view.fields {
                if let FieldView::Register { value, author, source, conflicts, .. } = field
                    && !conflicts.is_empty()
                {
                    let others: Vec<String> =
                        conflicts.iter().map(|c| format!("{} by {} at {}", c.value, c.author, c.source)).collect();
                    let _ = writeln!(s, "  {path}: {value} by {author} at {source}; concurrent: {}", others.join(", "));
                }
            }
        }
        let _ = writeln!(s, "\n{}", self.commands(exe, &m.snapshot_id));
        let _ = write!(
            s,
            "demo result: accepted={} folded={folded} patients={} matches_fold={} conflicts_surfaced={} open_conflicts={open} dlq={} \
             snapshot={} rows={} verified={} status={}",
            t.accepted,
            self.views.views.len(),
            if self.matches_reference { "yes" } else { "no" },
            self.conflicts_surfaced,
            self.dlq,
            m.snapshot_id,
            m.rows,
            if self.pages_checked { "yes" } else { "no" },
            if self.problems().is_empty() { "ok" } else { "FAILED" }
        );
        s
    }

    /// The patient with the most open conflicts, if any.
    fn example(&self) -> Option<&PatientView> {
        self.views
            .views
            .values()
            .filter(|v| v.open_conflicts > 0)
            .max_by_key(|v| (v.open_conflicts, std::cmp::Reverse(&v.patient_id)))
    }

    fn commands(&self, exe: &str, id: &str) -> String {
        let d = &self.dir;
        let keys = d.keys();
        let show = |p: PathBuf| p.display().to_string();
        let patient =
            self.example().or_else(|| self.views.views.values().next()).map_or("pt-000000", |v| v.patient_id.as_str());
        let (sql, py) = (show(d.root.join("snapshot-duckdb.sql")), show(d.root.join("snapshot_pyarrow.py")));
        let snapshot = format!(
            "--archive {} --profile identified {id} --archiver-pub {} --key {}",
            show(d.archive()),
            show(keys.join("archiver.pub")),
            show(keys.join("analytics.key"))
        );
        let mut s = String::from("Next steps:\n");
        let _ = writeln!(s, "  # verify the snapshot: signature, chain, every part's hash, every page decrypted");
        let _ = writeln!(s, "  {exe} snapshot verify {snapshot}");
        let _ =
            writeln!(s, "  # read it in place, still encrypted (no plaintext file): the keys go to a new 0600 file");
        let _ = writeln!(s, "  {exe} snapshot keys {snapshot} --format duckdb --out {sql}");
        let _ = writeln!(
            s,
            "  python3 -c \"import duckdb; c = duckdb.connect(); c.execute(open('{sql}').read()); \
             print(c.sql(\\\"SELECT patient_id, open_conflicts, vitals_heart_rate_bpm FROM tidemark_identified \
             WHERE patient_id = '{patient}'\\\").fetchall())\""
        );
        let _ = writeln!(s, "  # ...or with pyarrow (the snippet defines `table` and `dataset`)");
        let _ = writeln!(s, "  {exe} snapshot keys {snapshot} --format pyarrow --out {py}");
        let _ = writeln!(
            s,
            "  python3 -c \"import pyarrow.compute as pc; exec(open('{py}').read()); \
             print(table.filter(pc.field('patient_id') == '{patient}').to_pylist())\""
        );
        if self.embedded {
            let _ = writeln!(
                s,
                "  # ...or as the reference fold of the accepted envelopes computes it (equal to the live view)"
            );
            let _ = writeln!(
                s,
                "  {exe} fold --keys {} {} | grep '\"patient_id\":\"{patient}\"'",
                show(d.registry()),
                show(d.envelopes())
            );
        } else {
            let _ = writeln!(s, "  # ...or live from the state topic");
            let _ = writeln!(
                s,
                "  {exe} state --brokers {} --topic-prefix {} {patient}",
                self.bootstrap, self.topic_prefix
            );
        }
        s
    }
}
