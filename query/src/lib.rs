//! Tidemark query: reads patients back. Consumes the state topic into an
//! embedded store ([`store`], kept current by [`catchup`]) and answers
//! signed, audited reads of it.

pub mod catchup;
pub mod metrics;
pub mod store;
