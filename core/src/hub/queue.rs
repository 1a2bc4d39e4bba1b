//! A connection's outbound queue: one FIFO with a byte budget, emptied in
//! order, where a full queue drops events lowest priority first and oldest
//! first, each drop leaving a `gap` notice in the dropped event's place.
//!
//! Order is never changed, priority or not: a stream's items reach the
//! client in offset order, so the last offset it saw is a resume point that
//! misses nothing. Priority decides only what is dropped.

use std::collections::VecDeque;

use bytes::Bytes;

use super::Stream;
use super::event::Priority;
use super::protocol;
use super::streams::{Entry, Epoch};

/// What became of an item offered to the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Push {
    /// Queued (perhaps after dropping lower-priority events).
    Queued,
    /// Dropped itself, with a gap notice in its place.
    Dropped,
    /// Cannot be queued, and must not be dropped: a CRITICAL event or an
    /// answer, or a gap notice that does not fit. The connection is a slow
    /// consumer.
    Full,
}

enum Slot {
    Event {
        stream: Stream,
        epoch: Epoch,
        offset: u64,
        message: Bytes,
    },
    /// Offsets `from..=to` of a stream were dropped.
    Gap {
        stream: Stream,
        epoch: Epoch,
        from: u64,
        to: u64,
        cost: usize,
    },
    /// An answer or notice that is never dropped.
    Message(Bytes),
    /// Emptied: merged into the gap before it.
    Taken,
}

impl Slot {
    fn cost(&self) -> usize {
        match self {
            Self::Event { message, .. } | Self::Message(message) => message.len(),
            Self::Gap { cost, .. } => *cost,
            Self::Taken => 0,
        }
    }
}

/// Low, normal and high: the classes that may be dropped.
const DROPPABLE: usize = 3;

/// A priority's index among the classes, lowest first.
fn class(priority: Priority) -> usize {
    match priority {
        Priority::Low => 0,
        Priority::Normal => 1,
        Priority::High => 2,
        Priority::Critical => 3,
    }
}

pub(crate) struct Queue {
    slots: VecDeque<Slot>,
    /// The sequence number of `slots[0]`; each slot's is one more than the
    /// one before it.
    head: u64,
    /// The sequence numbers of the queued events of each droppable class,
    /// oldest first. An event leaves its list when it is sent or dropped,
    /// and both happen at a list's front, so the lists hold nothing stale.
    classes: [VecDeque<u64>; DROPPABLE],
    bytes: usize,
    budget: usize,
    /// Events dropped, by priority.
    dropped: [u64; 4],
}

impl Queue {
    pub(crate) fn new(budget: usize) -> Self {
        Self {
            slots: VecDeque::new(),
            head: 0,
            classes: Default::default(),
            bytes: 0,
            budget,
            dropped: [0; 4],
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(crate) fn dropped(&self) -> [u64; 4] {
        self.dropped
    }

    /// Queues an answer or notice, dropping events to make room.
    pub(crate) fn push_message(&mut self, message: Bytes) -> Push {
        if !self.make_room(message.len(), DROPPABLE) {
            return Push::Full;
        }
        self.bytes += message.len();
        self.slots.push_back(Slot::Message(message));
        Push::Queued
    }

    /// Queues a stream's item. Over budget, events of its class and below
    /// are dropped, lowest class and oldest first; if that is not enough,
    /// the item itself is, unless it is CRITICAL.
    pub(crate) fn push_event(&mut self, entry: &Entry) -> Push {
        let class = class(entry.priority);
        let size = entry.message.len();
        if !self.make_room(size, (class + 1).min(DROPPABLE)) {
            if entry.priority == Priority::Critical {
                return Push::Full;
            }
            self.dropped[class] += 1;
            return self.push_gap(entry);
        }
        let seq = self.head + self.slots.len() as u64;
        if let Some(list) = self.classes.get_mut(class) {
            list.push_back(seq);
        }
        self.bytes += size;
        self.slots.push_back(Slot::Event {
            stream: entry.stream.clone(),
            epoch: entry.position.epoch,
            offset: entry.position.offset,
            message: entry.message.clone(),
        });
        Push::Queued
    }

    /// The next message to send.
    pub(crate) fn pop(&mut self) -> Option<Bytes> {
        loop {
            let slot = self.slots.pop_front()?;
            let seq = self.head;
            self.head += 1;
            self.bytes -= slot.cost();
            match slot {
                Slot::Event { message, .. } => {
                    if let Some(list) = self.classes.iter_mut().find(|l| l.front() == Some(&seq)) {
                        list.pop_front();
                    }
                    return Some(message);
                }
                Slot::Gap {
                    stream,
                    epoch,
                    from,
                    to,
                    ..
                } => return Some(protocol::gap(stream.wire_name(), epoch, from, to)),
                Slot::Message(message) => return Some(message),
                Slot::Taken => {}
            }
        }
    }

    /// Drops queued events of the `classes` lowest classes, lowest and
    /// oldest first, until `size` more bytes fit. Whether they do.
    fn make_room(&mut self, size: usize, classes: usize) -> bool {
        while self.bytes + size > self.budget {
            let Some(class) = (0..classes).find(|&c| !self.classes[c].is_empty()) else {
                return false;
            };
            let seq = self.classes[class].pop_front().expect("not empty");
            self.dropped[class] += 1;
            self.drop_event((seq - self.head) as usize);
        }
        true
    }

    /// Turns the event at `index` into a gap, merged with a gap of the same
    /// stream just before or after it. A gap is usually shorter than the
    /// event it replaces, and a merge adds at most a digit for a whole
    /// event; where a drop frees less than its gap costs (a `join` is
    /// short), `make_room` goes on dropping until what comes fits or nothing
    /// is left to drop, so the budget holds either way.
    fn drop_event(&mut self, index: usize) {
        let Slot::Event {
            stream,
            epoch,
            offset,
            message,
        } = std::mem::replace(&mut self.slots[index], Slot::Taken)
        else {
            unreachable!("a class list names only queued events");
        };
        self.bytes -= message.len();
        // A gap just before grows, and moves here: the slot it leaves is
        // empty, and the next drop (usually of the next slot) finds it
        // just before again.
        if let Some(before) = index.checked_sub(1)
            && self.extend_gap(before, &stream, epoch, offset)
        {
            self.slots.swap(before, index);
            return;
        }
        if index + 1 < self.slots.len() && self.extend_gap(index + 1, &stream, epoch, offset) {
            return;
        }
        let cost = protocol::gap_size(stream.wire_name(), offset, offset);
        self.bytes += cost;
        self.slots[index] = Slot::Gap {
            stream,
            epoch,
            from: offset,
            to: offset,
            cost,
        };
    }

    /// Adds `offset` to the gap at `index` if it is one of the same stream
    /// that `offset` continues (or precedes). Whether it did.
    fn extend_gap(&mut self, index: usize, stream: &Stream, epoch: Epoch, offset: u64) -> bool {
        let Slot::Gap {
            stream: s,
            epoch: e,
            from,
            to,
            cost,
        } = &mut self.slots[index]
        else {
            return false;
        };
        if s != stream || *e != epoch {
            return false;
        }
        if *to + 1 == offset {
            *to = offset;
        } else if offset + 1 == *from {
            *from = offset;
        } else {
            return false;
        }
        let grown = protocol::gap_size(stream.wire_name(), *from, *to);
        self.bytes = self.bytes + grown - *cost;
        *cost = grown;
        true
    }

    /// Records a dropped item at the tail: merged into a gap there, or a
    /// new gap, if it fits.
    fn push_gap(&mut self, entry: &Entry) -> Push {
        let offset = entry.position.offset;
        let name = entry.stream.wire_name();
        // Merging may add a digit, with nothing freed: room for it first.
        let tail_gap = self.slots.back().is_some_and(|slot| {
            matches!(slot, Slot::Gap { stream, epoch, to, .. }
                if *stream == entry.stream && *epoch == entry.position.epoch && *to + 1 == offset)
        });
        let cost = if tail_gap {
            1
        } else {
            protocol::gap_size(name, offset, offset)
        };
        if !self.make_room(cost, DROPPABLE) {
            return Push::Full;
        }
        let last = self.slots.len() - usize::from(tail_gap);
        if tail_gap && self.extend_gap(last, &entry.stream, entry.position.epoch, offset) {
            return Push::Dropped;
        }
        self.bytes += cost;
        self.slots.push_back(Slot::Gap {
            stream: entry.stream.clone(),
            epoch: entry.position.epoch,
            from: offset,
            to: offset,
            cost,
        });
        Push::Dropped
    }
}
