#![allow(clippy::unwrap_used)]
use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use serde_json::Value;
use tidemark_schemas::{Catalog, FieldView};

use super::*;
use crate::table::Profile;
use crate::table::test_support::{NOW_MS, decode, random_view, read_part, write_part as write_one};

fn layout() -> Arc<TableLayout> {
    let profile = Profile::Deidentified { dataset_key: [0x42; 32] };
    Arc::new(TableLayout::new(Catalog::builtin(), &profile, NOW_MS).unwrap())
}

/// Spills each partition's views as the snapshot does.
fn spilled(layout: &TableLayout, partitions: &[Vec<PatientView>]) -> Spill {
    let mut spill = Spill::default();
    for (p, views) in partitions.iter().enumerate() {
        spill.add(spill_run(layout, views, p));
    }
    spill
}

fn spill_run(layout: &TableLayout, views: &[PatientView], p: usize) -> SpilledRun {
    spill(layout, views, i32::try_from(p).unwrap()).unwrap()
}

/// Every part of the plan, written: (plan, decoded rows, part).
fn cut(spill: &Spill, layout: &Arc<TableLayout>, rows_per_part: usize) -> Vec<(PartPlan, Vec<Value>, WrittenPart)> {
    let options = PartOptions { batch_rows: 7, ..PartOptions::default() };
    spill
        .plan(rows_per_part)
        .into_iter()
        .map(|plan| {
            let part = write_part(spill, &plan, layout.clone(), &options).unwrap();
            let rows = decode(&read_part(part.file.clone()))
                .into_iter()
                .map(|r| Value::Object(r.into_iter().collect()))
                .collect();
            (plan, rows, part)
        })
        .collect()
}

fn pseudonyms(rows: &[Value]) -> Vec<String> {
    rows.iter().map(|r| r["patient_id"].as_str().unwrap().to_owned()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// The finding's check, on any split of any views over partitions: parts
    /// are ranges of the pseudonym order, cut by row count alone (at most
    /// `rows_per_part`, sizes within one of each other), named by index, and
    /// hold exactly the rows one part of all the views would hold.
    #[test]
    fn parts_are_pseudonym_ranges_of_balanced_size_whatever_the_partitions(
        seed in any::<u64>(),
        rows in 0usize..70,
        partitions in 1usize..6,
        rows_per_part in 1usize..30,
    ) {
        let layout = layout();
        let views: Vec<PatientView> = (0..rows).map(|i| random_view(Catalog::builtin(), seed, i)).collect();
        let mut by_partition = vec![Vec::new(); partitions];
        for (i, v) in views.iter().enumerate() {
            by_partition[(seed as usize ^ i.wrapping_mul(7)) % partitions].push(v.clone());
        }
        let spill = spilled(&layout, &by_partition);
        prop_assert_eq!(spill.rows(), rows as u64);
        let parts = cut(&spill, &layout, rows_per_part);
        prop_assert_eq!(parts.len(), rows.div_ceil(rows_per_part));
        let sizes: Vec<usize> = parts.iter().map(|(_, r, _)| r.len()).collect();
        prop_assert!(sizes.iter().all(|&n| n <= rows_per_part), "{:?}", sizes);
        prop_assert!(sizes.iter().max().unwrap_or(&0) - sizes.iter().min().unwrap_or(&0) <= 1, "{:?}", sizes);
        for (i, (plan, _, part)) in parts.iter().enumerate() {
            prop_assert_eq!(plan.name(), format!("part-{i:05}.parquet"));
            prop_assert_eq!((part.unfit, part.duplicates), (0, 0));
        }
        // One part of all the views, sorted by pseudonym: the reference.
        let mut sorted = views.clone();
        crate::table::sort_views(&layout, &mut sorted);
        let whole: Vec<Value> = if rows == 0 { Vec::new() } else {
            decode(&read_part(write_one(&layout, &sorted, PartOptions::default()).0))
                .into_iter().map(|r| Value::Object(r.into_iter().collect())).collect()
        };
        let joined: Vec<Value> = parts.iter().flat_map(|(_, r, _)| r.clone()).collect();
        prop_assert_eq!(pseudonyms(&joined), pseudonyms(&whole), "parts in order are the pseudonym order");
        prop_assert!(joined == whole, "every value survives the scratch round trip");
    }

    /// The plan itself: quotas add up, stay within the bound and within one
    /// of each other, and each part's (prefix, skip) is where the part
    /// before it ended.
    #[test]
    fn the_plan_covers_every_rank_once(
        counts in proptest::collection::vec(0u64..5, 1..40),
        rows_per_part in 1usize..20,
    ) {
        let plans = plan(&counts, rows_per_part);
        let rows: u64 = counts.iter().sum();
        prop_assert_eq!(plans.iter().map(|p| p.quota).sum::<u64>(), rows);
        let mut start = 0;
        for (i, p) in plans.iter().enumerate() {
            prop_assert_eq!(p.index, i);
            prop_assert!(p.quota >= 1 && p.quota <= rows_per_part as u64);
            prop_assert!(p.skip < counts[p.prefix], "a part starts inside its prefix");
            prop_assert_eq!(counts[..p.prefix].iter().sum::<u64>() + p.skip, start);
            start += p.quota;
        }
        let (lo, hi) = (plans.iter().map(|p| p.quota).min(), plans.iter().map(|p| p.quota).max());
        prop_assert!(hi.zip(lo).is_none_or(|(h, l)| h - l <= 1));
    }
}

/// Patients of one partition spread over parts, and every part mixes
/// partitions: a part is not a function of the partition.
#[test]
fn a_partition_spreads_over_parts_and_parts_mix_partitions() {
    let layout = layout();
    let partitions: Vec<Vec<PatientView>> =
        (0..4).map(|p| (0..40).map(|i| random_view(Catalog::builtin(), 7, p * 100 + i)).collect()).collect();
    let partition_of: BTreeMap<String, usize> = partitions
        .iter()
        .enumerate()
        .flat_map(|(p, vs)| vs.iter().map(move |v| (v.patient_id.clone(), p)))
        .map(|(id, p)| (layout.patient_key(&id).into_owned(), p))
        .collect();
    let parts = cut(&spilled(&layout, &partitions), &layout, 20);
    assert_eq!(parts.len(), 8);
    let mut parts_of_partition = vec![BTreeSet::new(); 4];
    for (plan, rows, _) in &parts {
        let seen: BTreeSet<usize> = pseudonyms(rows).iter().map(|p| partition_of[p]).collect();
        assert!(seen.len() >= 2, "part {} holds one partition's rows only", plan.index);
        for p in seen {
            parts_of_partition[p].insert(plan.index);
        }
    }
    assert!(parts_of_partition.iter().all(|s| s.len() >= 4), "{parts_of_partition:?}");
}

/// A view that does not fit the catalog is set aside in whichever part it
/// falls; a patient in two partitions is kept once, even when the part
/// boundary falls between the two copies.
#[test]
fn unfit_views_and_a_patient_in_two_partitions_are_set_aside() {
    let layout = layout();
    let mut views: Vec<PatientView> = (0..30).map(|i| random_view(Catalog::builtin(), 3, i)).collect();
    let bad = FieldView::Set { values: vec![] };
    views[5].fields.insert("no.such.field".into(), bad);
    let twin = views[11].clone();
    let spill = spilled(&layout, &[views[..15].to_vec(), views[15..].to_vec(), vec![twin.clone()]]);
    assert_eq!(spill.rows(), 31);
    // The twin's two copies are adjacent in the merged order: every part
    // size is tried, so some put a part boundary between them.
    for rows_per_part in 1..=31 {
        let parts = cut(&spill, &layout, rows_per_part);
        let all: Vec<String> = parts.iter().flat_map(|(_, r, _)| pseudonyms(r)).collect();
        assert_eq!(all.len(), 29, "31 records, one unfit, one twin (rows per part {rows_per_part})");
        assert!(all.windows(2).all(|w| w[0] < w[1]), "strictly ascending across parts");
        assert!(all.contains(&layout.patient_key(&twin.patient_id).into_owned()));
        assert!(!all.contains(&layout.patient_key(&views[5].patient_id).into_owned()));
        let unfit: u64 = parts.iter().map(|(_, _, p)| p.unfit).sum();
        let duplicates: u64 = parts.iter().map(|(_, _, p)| p.duplicates).sum();
        assert_eq!((unfit, duplicates), (1, 1), "rows per part {rows_per_part}");
    }
}
