//! What every placement policy keeps, whatever its rule: each ready
//! streamlet's streams, its capacity and when it was last chosen, and the
//! calls of [`Placement`] around them. A policy is then a [`Rule`] alone:
//! which streamlet with room takes the next stream, found in an index of
//! its own that the bookkeeping keeps in step through [`Rule::relist`].
//! A rule that takes the first streamlet of an order is simpler still: an
//! [`Order`](super::Order).

use std::collections::HashMap;
use std::fmt;

use crate::{Labels, Placement, Request, WorkerKey};

/// A streamlet's load, as every policy keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    /// Streams placed (or occupied) on it and not released.
    pub active: u32,
    pub capacity: u32,
    /// The placement count when it was last chosen; 0: never.
    pub last: u64,
}

impl Load {
    pub fn has_room(&self) -> bool {
        self.active < self.capacity
    }
}

/// A placeable streamlet: its load, and what its policy's rule keeps of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member<M> {
    pub load: Load,
    pub mark: M,
}

/// The placeable streamlets of a pool, by id.
pub type Members<M> = HashMap<WorkerKey, Member<M>>;

/// A policy's own part: which streamlet with room takes the next stream.
pub trait Rule: Send + fmt::Debug {
    /// What the rule keeps of each streamlet besides its load (its region,
    /// its place on a ring; `()` for nothing), fixed when it is added.
    type Mark: Copy + Send + fmt::Debug;

    /// A streamlet with room is added: what the rule keeps of it.
    fn mark(&mut self, worker: WorkerKey, labels: &Labels) -> Self::Mark;

    /// A streamlet's load changed from `old` to `new`, each `None` where it
    /// had (or has) no room or was not (or is no longer) placeable: the rule
    /// brings its index of the streamlets with room up to date. Called for
    /// every change of a streamlet with room before or after, adds and
    /// removes included; never with `None` twice.
    fn relist(&mut self, worker: WorkerKey, mark: Self::Mark, old: Option<Load>, new: Option<Load>);

    /// The streamlet with room to take the next stream, `None` if none has
    /// room; the bookkeeping then claims a slot on it.
    fn choose(&mut self, request: &Request, members: &Members<Self::Mark>) -> Option<WorkerKey>;
}

/// A placement policy: the bookkeeping every policy shares, around its rule.
#[derive(Debug)]
pub struct Bookkeeping<R: Rule> {
    rule: R,
    members: Members<R::Mark>,
    /// Placements so far: the chosen streamlet's `last`.
    clock: u64,
}

impl<R: Rule + Default> Default for Bookkeeping<R> {
    fn default() -> Self {
        Self::with_rule(R::default())
    }
}

impl<R: Rule> Bookkeeping<R> {
    /// An empty policy choosing by `rule`.
    pub fn with_rule(rule: R) -> Self {
        Self { rule, members: HashMap::new(), clock: 0 }
    }

    /// The policy's rule.
    pub fn rule(&self) -> &R {
        &self.rule
    }

    fn update(&mut self, worker: WorkerKey, f: impl FnOnce(&mut Load)) {
        let Some(member) = self.members.get_mut(&worker) else { return };
        let old = member.load;
        f(&mut member.load);
        let (old, new) = (Some(old).filter(Load::has_room), Some(member.load).filter(Load::has_room));
        if old.is_some() || new.is_some() {
            self.rule.relist(worker, member.mark, old, new);
        }
    }
}

impl<R: Rule> Placement for Bookkeeping<R> {
    fn add(&mut self, worker: WorkerKey, capacity: u32, labels: &Labels) {
        self.remove(worker);
        if capacity == 0 {
            return;
        }
        let mark = self.rule.mark(worker, labels);
        let load = Load { active: 0, capacity, last: 0 };
        self.members.insert(worker, Member { load, mark });
        self.rule.relist(worker, mark, None, Some(load));
    }

    fn remove(&mut self, worker: WorkerKey) {
        let Some(Member { load, mark }) = self.members.remove(&worker) else { return };
        if load.has_room() {
            self.rule.relist(worker, mark, Some(load), None);
        }
    }

    fn place(&mut self, request: &Request) -> Option<WorkerKey> {
        let worker = self.rule.choose(request, &self.members)?;
        debug_assert!(
            self.members.get(&worker).is_some_and(|m| m.load.has_room()),
            "{:?} chose streamlet {worker}, which has no room",
            self.rule
        );
        self.clock += 1;
        let clock = self.clock;
        self.update(worker, |load| {
            load.active += 1;
            load.last = clock;
        });
        Some(worker)
    }

    fn release(&mut self, worker: WorkerKey) {
        self.update(worker, |load| load.active = load.active.saturating_sub(1));
    }

    fn occupy(&mut self, worker: WorkerKey) {
        self.update(worker, |load| load.active = load.active.saturating_add(1));
    }

    fn load(&self, worker: WorkerKey) -> Option<(u32, u32)> {
        self.members.get(&worker).map(|m| (m.load.active, m.load.capacity))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    /// The lowest id with room, and a record of what the bookkeeping told it.
    #[derive(Debug, Default)]
    struct LowestId {
        room: BTreeSet<WorkerKey>,
        marked: Vec<WorkerKey>,
        relisted: Vec<(WorkerKey, Option<Load>, Option<Load>)>,
    }

    impl Rule for LowestId {
        type Mark = WorkerKey;

        fn mark(&mut self, worker: WorkerKey, _labels: &Labels) -> WorkerKey {
            self.marked.push(worker);
            worker
        }

        fn relist(&mut self, worker: WorkerKey, mark: WorkerKey, old: Option<Load>, new: Option<Load>) {
            assert_eq!(mark, worker, "each streamlet keeps its own mark");
            self.relisted.push((worker, old, new));
            if old.is_some() {
                assert!(self.room.remove(&worker), "{worker} left a room it was not in");
            }
            if new.is_some() {
                assert!(self.room.insert(worker), "{worker} entered a room it was in");
            }
        }

        fn choose(&mut self, _request: &Request, _members: &Members<WorkerKey>) -> Option<WorkerKey> {
            self.room.first().copied()
        }
    }

    fn load(active: u32, capacity: u32, last: u64) -> Option<Load> {
        Some(Load { active, capacity, last })
    }

    #[test]
    fn counts_follow_each_call_and_the_rule_hears_only_of_room() {
        let mut p = Bookkeeping::<LowestId>::default();
        let any = Request::default();
        p.add(1, 2, &Labels::new());
        p.add(2, 1, &Labels::new());
        assert_eq!([p.place(&any), p.place(&any), p.place(&any), p.place(&any)], [Some(1), Some(1), Some(2), None]);
        assert_eq!((p.load(1), p.load(2)), (Some((2, 2)), Some((1, 1))));
        p.occupy(2); // a stream moved in over capacity
        p.release(2);
        assert_eq!(p.place(&any), None, "2 holds as many streams as it has slots");
        p.release(2);
        assert_eq!(p.place(&any), Some(2));
        assert_eq!(
            p.rule().relisted,
            [
                (1, None, load(0, 2, 0)),
                (2, None, load(0, 1, 0)),
                (1, load(0, 2, 0), load(1, 2, 1)),
                (1, load(1, 2, 1), None),
                (2, load(0, 1, 0), None),
                (2, None, load(0, 1, 3)),
                (2, load(0, 1, 3), None),
            ],
            "each placement stamped with its count; a change between no room and no room is not told"
        );
    }

    #[test]
    fn unknown_and_empty_streamlets_are_never_placeable() {
        let mut p = Bookkeeping::<LowestId>::default();
        p.add(1, 0, &Labels::new());
        p.release(7);
        p.occupy(7);
        p.remove(7);
        assert_eq!((p.load(1), p.load(7)), (None, None));
        assert_eq!(p.place(&Request::default()), None);
        assert!(p.rule().marked.is_empty() && p.rule().relisted.is_empty(), "{:?}", p.rule());
    }

    #[test]
    fn adding_again_starts_the_streamlet_afresh() {
        let mut p = Bookkeeping::<LowestId>::default();
        p.add(1, 1, &Labels::new());
        p.place(&Request::default());
        p.add(1, 3, &Labels::new());
        assert_eq!(p.load(1), Some((0, 3)));
        p.add(1, 0, &Labels::new());
        assert_eq!(p.load(1), None, "capacity 0 removes it");
        assert_eq!(p.rule().marked, [1, 1]);
        assert!(p.rule().room.is_empty());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Add(WorkerKey, u32),
        Remove(WorkerKey),
        Place,
        Release(WorkerKey),
        Occupy(WorkerKey),
    }

    fn op() -> impl Strategy<Value = Op> {
        let worker = 0u64..6;
        prop_oneof![
            (worker.clone(), 0u32..4).prop_map(|(w, c)| Op::Add(w, c)),
            worker.clone().prop_map(Op::Remove),
            Just(Op::Place),
            Just(Op::Place),
            worker.clone().prop_map(Op::Release),
            worker.prop_map(Op::Occupy),
        ]
    }

    proptest! {
        /// Whatever the calls, the rule's index holds exactly the
        /// streamlets with room, and the counts agree with a plain model.
        #[test]
        fn the_rule_always_knows_which_streamlets_have_room(ops in proptest::collection::vec(op(), 0..200)) {
            let mut p = Bookkeeping::<LowestId>::default();
            let mut model: HashMap<WorkerKey, (u32, u32)> = HashMap::new();
            for op in ops {
                match op {
                    Op::Add(w, c) => {
                        p.add(w, c, &Labels::new());
                        model.remove(&w);
                        if c > 0 {
                            model.insert(w, (0, c));
                        }
                    }
                    Op::Remove(w) => {
                        p.remove(w);
                        model.remove(&w);
                    }
                    Op::Place => match p.place(&Request::default()) {
                        Some(w) => model.get_mut(&w).unwrap().0 += 1,
                        None => prop_assert!(model.values().all(|(a, c)| a >= c)),
                    },
                    Op::Release(w) => {
                        p.release(w);
                        if let Some((a, _)) = model.get_mut(&w) {
                            *a = a.saturating_sub(1);
                        }
                    }
                    Op::Occupy(w) => {
                        p.occupy(w);
                        if let Some((a, _)) = model.get_mut(&w) {
                            *a += 1;
                        }
                    }
                }
                let with_room: BTreeSet<WorkerKey> = model.iter().filter(|(_, (a, c))| a < c).map(|(w, _)| *w).collect();
                prop_assert_eq!(&p.rule().room, &with_room);
                for w in 0..6 {
                    prop_assert_eq!(p.load(w), model.get(&w).copied());
                }
            }
        }
    }
}
