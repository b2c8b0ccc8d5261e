//! A bounded set of recently produced observation ids: drops duplicates that a
//! sender or the broker redelivers, before they reach the bus. Downstream
//! consumers stay idempotent anyway (unique key, deterministic ids): this only
//! saves work and keeps the observation topic free of the common duplicates.

use std::collections::VecDeque;

use foldhash::{HashSet, HashSetExt as _};

use vitalwatch_schemas::ObservationId;

/// FIFO-bounded id set.
#[derive(Debug)]
pub struct Dedup {
    set: HashSet<u128>,
    order: VecDeque<u128>,
    capacity: usize,
}

impl Dedup {
    /// A cache holding at most `capacity` ids (16 bytes each plus overhead).
    pub fn new(capacity: usize) -> Self {
        Dedup { set: HashSet::with_capacity(capacity.min(1 << 20)), order: VecDeque::new(), capacity }
    }

    /// True if `id` was recorded and is still remembered.
    pub fn contains(&self, id: ObservationId) -> bool {
        self.set.contains(&id.0)
    }

    /// Records `id` (call only after the bus acknowledged it).
    pub fn insert(&mut self, id: ObservationId) {
        if self.capacity == 0 || !self.set.insert(id.0) {
            return;
        }
        self.order.push_back(id.0);
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }

    /// Number of ids remembered.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_fifo() {
        let mut d = Dedup::new(2);
        d.insert(ObservationId(1));
        d.insert(ObservationId(2));
        d.insert(ObservationId(2));
        assert!(d.contains(ObservationId(1)));
        d.insert(ObservationId(3));
        assert!(!d.contains(ObservationId(1)));
        assert!(d.contains(ObservationId(2)) && d.contains(ObservationId(3)));
        assert_eq!(d.len(), 2);
    }
}
