//! Tidemark query: reads patients back. Consumes the state topic into an
//! embedded store and answers signed, audited reads of it.

pub mod store;
