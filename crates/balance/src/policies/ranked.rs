//! Rules that take the first streamlet with room in an order of their own:
//! least-connections, layered and pack differ only in their [`Order`].

use std::collections::BTreeSet;
use std::fmt;

use super::bookkeeping::{Load, Members, Rule};
use crate::{Labels, Request, WorkerKey};

/// Where a streamlet with room sorts among the others: the first takes the
/// next stream.
pub trait Order: Send + fmt::Debug {
    /// What the order needs of each streamlet besides its load, fixed when
    /// it is added (`()` for nothing).
    type Mark: Copy + Send + fmt::Debug;
    /// A streamlet's place; unique (it holds the worker id), and cheap to
    /// compare: it is compared O(log n) times per placement.
    type Key: Ord + Send + fmt::Debug;

    fn mark(&mut self, worker: WorkerKey, labels: &Labels) -> Self::Mark;
    fn key(&self, worker: WorkerKey, mark: Self::Mark, load: Load) -> Self::Key;
    /// The streamlet a key belongs to.
    fn worker(key: &Self::Key) -> WorkerKey;
}

/// The [`Rule`] of an [`Order`]: the streamlets with room in a `BTreeSet`
/// by their keys, so a placement is O(log n).
#[derive(Debug)]
pub struct Ranked<O: Order> {
    order: O,
    room: BTreeSet<O::Key>,
}

impl<O: Order + Default> Default for Ranked<O> {
    fn default() -> Self {
        Self::new(O::default())
    }
}

impl<O: Order> Ranked<O> {
    pub fn new(order: O) -> Self {
        Self { order, room: BTreeSet::new() }
    }
}

impl<O: Order> Rule for Ranked<O> {
    type Mark = O::Mark;

    fn mark(&mut self, worker: WorkerKey, labels: &Labels) -> O::Mark {
        self.order.mark(worker, labels)
    }

    fn relist(&mut self, worker: WorkerKey, mark: O::Mark, old: Option<Load>, new: Option<Load>) {
        if let Some(old) = old {
            self.room.remove(&self.order.key(worker, mark, old));
        }
        if let Some(new) = new {
            self.room.insert(self.order.key(worker, mark, new));
        }
    }

    fn choose(&mut self, _request: &Request, _members: &Members<O::Mark>) -> Option<WorkerKey> {
        self.room.first().map(O::worker)
    }
}
