//! Offset continuity: notices records a consumer never saw.
//!
//! Within a partition of a topic written without transactions or compaction
//! (all of vitalwatch's), offsets are consecutive. A consumer that jumps
//! forward has skipped records: the broker dropped them (retention expired
//! while the group lagged, an `auto.offset.reset`) or served them wrongly (a
//! broker bug: tansu 0.6.0 skipped the rest of a producer batch after a
//! handover). Either way readings were not processed, which must never go
//! unnoticed, so the Kafka consumer reports every jump as an error and a
//! metric.
//!
//! This is the pure part: it follows assignments and offsets. After an
//! assignment, the first record of a partition is checked against the
//! group's committed offset by the caller (a broker round trip).

use std::collections::HashMap;

/// A (topic, partition).
pub type Partition = (String, i32);

/// What a record's offset says about continuity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The next record, as expected (or a re-delivery of an earlier one).
    InOrder,
    /// The first record since the partition was assigned: compare it with the
    /// committed offset.
    FirstAfterAssignment,
    /// Records were skipped: `expected` was next, `skipped` records never came.
    Gap {
        /// The offset that should have come next.
        expected: i64,
        /// How many offsets were skipped.
        skipped: i64,
    },
}

/// Where a partition stands.
#[derive(Debug, Clone, Copy)]
enum Position {
    /// Assigned, nothing consumed since: the next record is checked by the caller.
    Fresh,
    /// The offset expected next.
    Next(i64),
}

/// Follows the offsets consumed per partition. Keyed by topic first, so the
/// per-record lookup borrows the topic name instead of allocating a key.
#[derive(Debug, Default)]
pub struct Continuity {
    topics: HashMap<String, HashMap<i32, Position>>,
}

impl Continuity {
    /// Partitions (re)assigned to this member: their position restarts at the
    /// committed offset.
    pub fn assigned(&mut self, partitions: impl IntoIterator<Item = Partition>) {
        for (topic, partition) in partitions {
            self.topics.entry(topic).or_default().insert(partition, Position::Fresh);
        }
    }

    /// Partitions taken away from this member.
    pub fn revoked(&mut self, partitions: impl IntoIterator<Item = Partition>) {
        for (topic, partition) in partitions {
            if let Some(t) = self.topics.get_mut(&topic) {
                t.remove(&partition);
            }
        }
    }

    /// Records that the record at `offset` of `(topic, partition)` arrived.
    pub fn observe(&mut self, topic: &str, partition: i32, offset: i64) -> Step {
        let positions = match self.topics.get_mut(topic) {
            Some(t) => t,
            None => self.topics.entry(topic.to_owned()).or_default(),
        };
        // No assignment seen (should not happen): start following here.
        let position = positions.entry(partition).or_insert(Position::Next(offset));
        let step = match *position {
            Position::Fresh => Step::FirstAfterAssignment,
            Position::Next(expected) if offset > expected => Step::Gap { expected, skipped: offset - expected },
            Position::Next(_) => Step::InOrder,
        };
        let next = match *position {
            Position::Next(expected) => expected.max(offset + 1),
            Position::Fresh => offset + 1,
        };
        *position = Position::Next(next);
        step
    }
}

/// How many records were skipped when the first record consumed after an
/// assignment is at `first` and the group had committed `committed` (the
/// next offset to process). Zero when it resumed where it should, or earlier
/// (a re-delivery).
pub fn skipped_at_resume(committed: i64, first: i64) -> i64 {
    (first - committed).max(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: i32) -> Partition {
        ("obs".to_owned(), n)
    }

    #[test]
    fn consecutive_offsets_are_in_order() {
        let mut c = Continuity::default();
        c.assigned([p(0)]);
        assert_eq!(c.observe("obs", 0, 10), Step::FirstAfterAssignment);
        for o in 11..20 {
            assert_eq!(c.observe("obs", 0, o), Step::InOrder);
        }
    }

    #[test]
    fn a_jump_is_a_gap_of_the_missing_count() {
        let mut c = Continuity::default();
        c.assigned([p(0)]);
        c.observe("obs", 0, 0);
        c.observe("obs", 0, 1);
        assert_eq!(c.observe("obs", 0, 7), Step::Gap { expected: 2, skipped: 5 });
        assert_eq!(c.observe("obs", 0, 8), Step::InOrder, "reported once");
    }

    #[test]
    fn redelivery_is_not_a_gap() {
        let mut c = Continuity::default();
        c.assigned([p(0)]);
        c.observe("obs", 0, 5);
        c.observe("obs", 0, 6);
        assert_eq!(c.observe("obs", 0, 3), Step::InOrder);
        assert_eq!(c.observe("obs", 0, 7), Step::InOrder);
    }

    #[test]
    fn partitions_are_followed_separately() {
        let mut c = Continuity::default();
        c.assigned([p(0), p(1)]);
        c.observe("obs", 0, 100);
        c.observe("obs", 1, 5);
        assert_eq!(c.observe("obs", 0, 101), Step::InOrder);
        assert_eq!(c.observe("obs", 1, 6), Step::InOrder);
        assert_eq!(c.observe("other", 0, 50), Step::InOrder, "unknown partition: followed from here");
    }

    #[test]
    fn reassignment_restarts_the_check() {
        let mut c = Continuity::default();
        c.assigned([p(0)]);
        c.observe("obs", 0, 0);
        // Another member owned it meanwhile and processed up to 500.
        c.revoked([p(0)]);
        c.assigned([p(0)]);
        assert_eq!(c.observe("obs", 0, 500), Step::FirstAfterAssignment);
        assert_eq!(c.observe("obs", 0, 501), Step::InOrder);
    }

    #[test]
    fn resume_beyond_the_committed_offset_is_skipped_records() {
        assert_eq!(skipped_at_resume(4, 4), 0);
        assert_eq!(skipped_at_resume(4, 2), 0, "re-delivery");
        assert_eq!(skipped_at_resume(4, 10), 6);
    }
}
