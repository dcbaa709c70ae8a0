//! What a workload is made of, for printing beside benchmark figures.

use std::collections::BTreeMap;
use std::fmt;

use tidemark_schemas::{EditEvent, Op};

/// Total ops in a workload.
pub fn op_count(events: &[EditEvent]) -> usize {
    events.iter().map(|e| e.ops.len()).sum()
}

/// What a workload is made of, for printing beside the figures.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mix {
    /// Distinct patients.
    pub patients: usize,
    /// Events.
    pub events: usize,
    /// Ops.
    pub ops: usize,
    /// `set`/`clear` ops.
    pub registers: usize,
    /// `add`/`remove` ops.
    pub sets: usize,
    /// Of which `remove`.
    pub removes: usize,
    /// `append` ops.
    pub notes: usize,
    /// Events that carry `observed`.
    pub observed: usize,
}

impl Mix {
    /// Counts a workload.
    pub fn of(events: &[EditEvent]) -> Self {
        let mut patients: BTreeMap<&str, ()> = BTreeMap::new();
        let mut m = Mix { events: events.len(), ..Mix::default() };
        for e in events {
            patients.insert(&e.patient_id, ());
            m.observed += usize::from(e.observed.is_some());
            for op in &e.ops {
                m.ops += 1;
                match op {
                    Op::Set { .. } | Op::Clear { .. } => m.registers += 1,
                    Op::Add { .. } => m.sets += 1,
                    Op::Remove { .. } => {
                        m.sets += 1;
                        m.removes += 1;
                    }
                    Op::Append { .. } => m.notes += 1,
                }
            }
        }
        m.patients = patients.len();
        m
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pct = |n: usize, of: usize| 100.0 * n as f64 / of.max(1) as f64;
        write!(
            f,
            "{} patients, {} events, {} ops ({:.2} per event): {:.0}% set ({:.0}% of them removes), \
             {:.0}% register, {:.0}% notes; {:.0}% of events observed, the rest blind",
            self.patients,
            self.events,
            self.ops,
            self.ops as f64 / self.events.max(1) as f64,
            pct(self.sets, self.ops),
            pct(self.removes, self.sets),
            pct(self.registers, self.ops),
            pct(self.notes, self.ops),
            pct(self.observed, self.events),
        )
    }
}
