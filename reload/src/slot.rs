//! A value replaced at run time while readers keep the one they started with.

use std::sync::{Arc, PoisonError, RwLock};

/// Holds an `Arc<T>` that a reload replaces. [`Slot::get`] hands out a clone
/// of the current `Arc`, so a reader holds the lock only for that clone and
/// finishes its work with the value it took, however many reloads happen
/// meanwhile.
#[derive(Debug)]
pub struct Slot<T> {
    current: RwLock<Arc<T>>,
}

impl<T> Slot<T> {
    /// A slot holding `value`.
    pub fn new(value: T) -> Self {
        Self { current: RwLock::new(Arc::new(value)) }
    }

    /// The current value.
    pub fn get(&self) -> Arc<T> {
        // Only a panic during `set`'s assignment could poison the lock, and
        // that leaves a whole `Arc` either way: the value is still sound.
        self.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Replaces the value for every later [`Slot::get`].
    pub fn set(&self, value: Arc<T>) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_keeps_its_value_across_a_swap() {
        let slot = Slot::new(1);
        let taken = slot.get();
        slot.set(Arc::new(2));
        assert_eq!((*taken, *slot.get()), (1, 2));
    }
}
