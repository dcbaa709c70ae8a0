//! The de-identified profile's parts: cut by pseudonym order and row count,
//! never by partition.
//!
//! Key decision: the state topic is partitioned by crc32(patient id), so a
//! part of partition `p` held exactly the patients with crc32(id) mod
//! partitions = `p`, and its name said which: anyone holding a list of
//! candidate ids could tell which part, and so which few rows, each could be
//! in. De-identified parts are instead cut from all partitions merged in
//! pseudonym order. While the topic is read, each partition's views are
//! spilled, sorted by pseudonym, to an encrypted scratch run
//! ([`crate::scratch`]), and the number of pseudonyms under each 16-bit
//! prefix is counted. Once every partition is read the snapshot's row count
//! is known: it is cut into `ceil(rows / rows_per_part)` parts whose row
//! counts differ by at most one, part `i` holding the rows of one contiguous
//! range of pseudonym ranks, sorted. The pseudonym is a keyed hash (uniform,
//! and unknown without the dataset key), so which part a row is in says
//! nothing of its patient id, and part names carry only their index.
//!
//! The prefix counts tell each part where its range starts (a prefix, and
//! how many rows of that prefix belong to earlier parts) without reading
//! anything, so every part is built on its own, in parallel, by merging the
//! runs from that prefix: memory holds one scratch segment per run and one
//! part per builder, never the snapshot.

use std::sync::Arc;

use tidemark_schemas::PatientView;

use crate::scratch::{Merge, Run, RunWriter, ScratchError};
use crate::table::{PartOptions, PartWriter, TableLayout};
use crate::views;

/// Pseudonym prefixes counted: the first 16 bits (4 hex digits). With a
/// uniform pseudonym, a prefix holds rows / 65,536 rows, the most a part
/// builder skips to reach its first row.
const PREFIXES: usize = 1 << 16;

/// Hex digits of a pseudonym that make its prefix.
const PREFIX_DIGITS: usize = 4;

/// The prefix of a pseudonym (lowercase hex, as `TableLayout::patient_key`
/// makes them).
fn prefix(pseudonym: &[u8]) -> usize {
    let digits = pseudonym.get(..PREFIX_DIGITS).and_then(|d| std::str::from_utf8(d).ok());
    digits.and_then(|d| usize::from_str_radix(d, 16).ok()).expect("a pseudonym is 64 lowercase hex digits")
}

/// One partition's views, spilled for the de-identified profile.
pub struct SpilledRun {
    run: Run,
    partition: i32,
    counts: Vec<u32>,
}

/// Spills `views` as one scratch run sorted by pseudonym, counting the
/// pseudonyms under each prefix. Each pseudonym is computed once.
///
/// # Errors
/// [`ScratchError`]: the local scratch space failed.
pub fn spill(layout: &TableLayout, views: &[PatientView], partition: i32) -> Result<SpilledRun, ScratchError> {
    assert!(layout.is_deidentified(), "only the de-identified profile is cut by pseudonym");
    let mut keyed: Vec<(String, &PatientView)> =
        views.iter().map(|v| (layout.patient_key(&v.patient_id).into_owned(), v)).collect();
    keyed.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut counts = vec![0u32; PREFIXES];
    let mut writer = RunWriter::new()?;
    let mut value = Vec::new();
    for (pseudonym, view) in &keyed {
        counts[prefix(pseudonym.as_bytes())] += 1;
        value.clear();
        // A view is strings, numbers and maps with string keys: serde_json
        // cannot fail to write it into a Vec.
        serde_json::to_writer(&mut value, view).expect("a patient view serialises");
        writer.push(pseudonym.as_bytes(), &value)?;
    }
    Ok(SpilledRun { run: writer.finish()?, partition, counts })
}

/// A profile's spilled runs and the pseudonyms counted under each prefix.
#[derive(Default)]
pub struct Spill {
    runs: Vec<Run>,
    partitions: Vec<i32>,
    counts: Vec<u64>,
}

impl Spill {
    /// Adds one partition's run.
    pub fn add(&mut self, spilled: SpilledRun) {
        if self.counts.is_empty() {
            self.counts = vec![0; PREFIXES];
        }
        for (total, n) in self.counts.iter_mut().zip(&spilled.counts) {
            *total += u64::from(*n);
        }
        self.runs.push(spilled.run);
        self.partitions.push(spilled.partition);
    }

    /// Rows spilled.
    pub fn rows(&self) -> u64 {
        self.runs.iter().map(Run::rows).sum()
    }

    /// Bytes of scratch space the runs take.
    pub fn disk_bytes(&self) -> u64 {
        self.runs.iter().map(Run::disk_bytes).sum()
    }

    /// The parts to cut, at most `rows_per_part` rows each.
    pub fn plan(&self, rows_per_part: usize) -> Vec<PartPlan> {
        plan(&self.counts, rows_per_part)
    }
}

/// Where one part's rows are in the merged pseudonym order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartPlan {
    /// The part's index: its name, and its place in the manifest.
    pub index: usize,
    /// The prefix its first row is under.
    pub prefix: usize,
    /// Rows under that prefix that belong to earlier parts.
    pub skip: u64,
    /// Rows it takes (records merged: views set aside while building count).
    pub quota: u64,
}

impl PartPlan {
    /// The part's object name: its index only.
    pub fn name(&self) -> String {
        format!("part-{:05}.parquet", self.index)
    }
}

/// `ceil(rows / rows_per_part)` parts, row counts differing by at most one,
/// each starting where the one before ended. `counts[p]` is the number of
/// rows under prefix `p`.
pub(crate) fn plan(counts: &[u64], rows_per_part: usize) -> Vec<PartPlan> {
    let rows: u64 = counts.iter().sum();
    if rows == 0 {
        return Vec::new();
    }
    let parts = rows.div_ceil(rows_per_part.max(1) as u64);
    let (base, extra) = (rows / parts, rows % parts);
    let mut plans = Vec::with_capacity(usize::try_from(parts).unwrap_or(0));
    let (mut prefix, mut before, mut start) = (0, 0, 0);
    for index in 0..parts {
        // `start < rows`, so some prefix at or after this one holds it.
        while before + counts[prefix] <= start {
            before += counts[prefix];
            prefix += 1;
        }
        let quota = base + u64::from(index < extra);
        let index = usize::try_from(index).expect("fewer parts than rows");
        plans.push(PartPlan { index, prefix, skip: start - before, quota });
        start += quota;
    }
    plans
}

/// One de-identified part, written (encrypted when the options say so).
pub struct WrittenPart {
    /// The Parquet file.
    pub file: Vec<u8>,
    /// Rows written.
    pub rows: u64,
    /// Row groups written.
    pub row_groups: usize,
    /// Views that did not fit the catalog (set aside, not written).
    pub unfit: u64,
    /// Views of a patient already seen in another partition (set aside).
    pub duplicates: u64,
}

/// Why a part could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Reading the scratch runs failed.
    #[error(transparent)]
    Scratch(#[from] ScratchError),
    /// The table layer failed (not because of one view: those are set aside).
    #[error(transparent)]
    Table(#[from] crate::table::TableError),
}

/// Writes the part `plan` describes: merges the runs from its prefix, skips
/// the rows of earlier parts, and writes its quota of views sorted by
/// pseudonym, setting aside views that do not fit the catalog and a second
/// view of one patient (a patient's records all belong in one partition;
/// two partitions holding one patient is a producer bug, and the first
/// partition's view is kept).
///
/// # Errors
/// [`WriteError`]; views that do not fit are set aside, not errors.
pub fn write_part(
    spill: &Spill,
    plan: &PartPlan,
    layout: Arc<TableLayout>,
    options: &PartOptions,
) -> Result<WrittenPart, WriteError> {
    let from = format!("{:0width$x}", plan.prefix, width = PREFIX_DIGITS);
    let mut merge = Merge::new(&spill.runs, from.as_bytes())?;
    let mut last = Vec::new();
    for _ in 0..plan.skip {
        merge.next(|key, _, _| remember(&mut last, key))?;
    }
    let mut writer = PartWriter::new(layout, Vec::new(), options.clone())?;
    let mut out = WrittenPart { file: Vec::new(), rows: 0, row_groups: 0, unfit: 0, duplicates: 0 };
    let (mut batch, mut partitions) = (Vec::new(), Vec::new());
    let mut taken = 0;
    while taken < plan.quota {
        let next = merge.next(|key, run, value| {
            let repeated = !remember(&mut last, key);
            (repeated, spill.partitions[run], serde_json::from_slice::<PatientView>(value))
        })?;
        let Some((repeated, partition, view)) = next else { break };
        taken += 1;
        if repeated {
            out.duplicates += 1;
            tracing::warn!(partition, reason = "key_mismatch", "a patient's view is in two partitions; set aside");
            continue;
        }
        // The archiver wrote this JSON from a decoded view moments ago, and
        // the segment authenticated: it cannot fail to decode.
        batch.push(view.expect("a spilled view decodes"));
        partitions.push(partition);
        if batch.len() >= options.batch_rows {
            out.unfit += views::push_fitting(&mut writer, &batch, |i| partitions[i])?;
            batch.clear();
            partitions.clear();
        }
    }
    out.unfit += views::push_fitting(&mut writer, &batch, |i| partitions[i])?;
    let (file, summary) = writer.finish()?;
    (out.file, out.rows, out.row_groups) = (file, summary.rows, summary.row_groups);
    Ok(out)
}

/// Makes `key` the last one seen; false if it already was.
fn remember(last: &mut Vec<u8>, key: &[u8]) -> bool {
    if last.as_slice() == key {
        return false;
    }
    last.clear();
    last.extend_from_slice(key);
    true
}

#[cfg(test)]
#[path = "deid_cut_tests.rs"]
mod tests;
