//! The deadlines of every connection in one heap, so the next wake-up is a
//! peek however many connections there are.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// A deadline in the heap: for the connection in slot `index`, while that
/// slot holds the same `generation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Entry {
    pub(crate) at: Instant,
    pub(crate) index: usize,
    pub(crate) generation: u32,
}

/// A min-heap of deadlines with lazy deletion.
///
/// Each connection remembers the deadline of its live entry (`armed`). A
/// deadline that moves later, as the heartbeat's does with every frame
/// received, pushes nothing: the old entry fires early and the connection
/// re-arms then. So a busy connection costs one heap operation per
/// heartbeat interval, not one per message. A deadline that moves earlier
/// pushes a new entry; the old one no longer matches `armed` and is skipped
/// when it comes out.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<Entry>>,
}

impl Timers {
    /// Makes sure an entry fires at or before `deadline`.
    pub(crate) fn arm(
        &mut self,
        armed: &mut Option<Instant>,
        deadline: Option<Instant>,
        index: usize,
        generation: u32,
    ) {
        let Some(at) = deadline else { return };
        if armed.is_none_or(|current| at < current) {
            *armed = Some(at);
            self.heap.push(Reverse(Entry {
                at,
                index,
                generation,
            }));
        }
    }

    /// The earliest deadline, live or stale (a stale one only wakes the
    /// caller early).
    pub(crate) fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(entry)| entry.at)
    }

    /// Takes the earliest entry if it is due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Entry> {
        if self.next()? > now {
            return None;
        }
        self.heap.pop().map(|Reverse(entry)| entry)
    }

    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Drops the entries `live` rejects.
    pub(crate) fn retain(&mut self, mut live: impl FnMut(&Entry) -> bool) {
        self.heap.retain(|Reverse(entry)| live(entry));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_later_deadline_keeps_the_early_entry_and_an_earlier_one_replaces_it() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut timers = Timers::default();
        let mut armed = None;
        timers.arm(&mut armed, Some(t0 + 10 * s), 3, 0);
        timers.arm(&mut armed, Some(t0 + 20 * s), 3, 0);
        assert_eq!((timers.len(), armed), (1, Some(t0 + 10 * s)));
        timers.arm(&mut armed, Some(t0 + 5 * s), 3, 0);
        timers.arm(&mut armed, None, 3, 0);
        assert_eq!((timers.len(), armed), (2, Some(t0 + 5 * s)));

        assert_eq!(timers.pop_due(t0 + 4 * s), None);
        let first = timers.pop_due(t0 + 30 * s).unwrap();
        assert_eq!((first.at, first.index), (t0 + 5 * s, 3));
        // The superseded entry is still there; the owner tells it apart.
        let stale = timers.pop_due(t0 + 30 * s).unwrap();
        assert_ne!(Some(stale.at), armed);
        assert_eq!(timers.pop_due(t0 + 30 * s), None);
    }

    #[test]
    fn entries_come_out_in_deadline_order_and_retain_drops_stale_ones() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        for (index, ms) in [(0, 30u64), (1, 10), (2, 20), (3, 10)] {
            timers.arm(&mut None, Some(t0 + Duration::from_millis(ms)), index, 7);
        }
        timers.retain(|entry| entry.index != 2);
        assert_eq!(timers.next(), Some(t0 + Duration::from_millis(10)));
        let order: Vec<usize> = std::iter::from_fn(|| timers.pop_due(t0 + Duration::from_secs(1)))
            .map(|entry| entry.index)
            .collect();
        assert_eq!(order, [1, 3, 0]);
    }
}
