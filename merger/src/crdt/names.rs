//! Shared copies of the source and author names a document has seen.

use std::sync::Arc;

/// An interning cache of names, so that applying an event allocates no new
/// name: write ids, version vectors and authors share one copy. A cache, not
/// state: every `Names` compares equal, so two documents with equal state are
/// equal whatever names each happened to cache.
#[derive(Clone, Debug, Default)]
pub struct Names(Vec<Arc<str>>);

impl PartialEq for Names {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Names {}

impl Names {
    /// At most this many names are cached; a document with more (a record
    /// edited by hundreds of clinicians) allocates the rest per use.
    const CAPACITY: usize = 64;

    /// The shared copy of `name`. Documents see a handful of sources and
    /// authors, so a linear scan beats hashing.
    pub fn get(&mut self, name: &str) -> Arc<str> {
        match self.0.iter().find(|n| &***n == name) {
            Some(n) => n.clone(),
            None => {
                let n: Arc<str> = Arc::from(name);
                if self.0.len() < Self::CAPACITY {
                    self.0.push(n.clone());
                }
                n
            }
        }
    }
}
