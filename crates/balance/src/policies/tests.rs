//! Invariants that every policy keeps, whatever the sequence of operations.

use std::collections::HashMap;

use proptest::prelude::*;

use super::*;
use crate::{Labels, Request, WorkerKey};

const REGIONS: [&str; 3] = ["eu-west", "us-east", "ap-south"];

#[derive(Debug, Clone)]
enum Op {
    Add { worker: WorkerKey, capacity: u32, region: Option<usize> },
    Remove(WorkerKey),
    Place(Option<usize>),
    Release(WorkerKey),
}

fn op() -> impl Strategy<Value = Op> {
    let worker = 0u64..8;
    let region = proptest::option::of(0..REGIONS.len());
    prop_oneof![
        1 => (worker.clone(), 0u32..5, region.clone())
            .prop_map(|(worker, capacity, region)| Op::Add { worker, capacity, region }),
        1 => worker.clone().prop_map(Op::Remove),
        4 => region.prop_map(Op::Place),
        2 => worker.prop_map(Op::Release),
    ]
}

fn options() -> PolicyOptions {
    PolicyOptions {
        prefer: vec![(REGION_LABEL.to_string(), "eu-west".to_string())],
        distances: HashMap::from([
            (("eu-west".into(), "us-east".into()), 80),
            (("us-east".into(), "ap-south".into()), 200),
        ]),
        penalty_per_unit: 0.01,
        seed: 9,
    }
}

#[test]
fn names_round_trip() {
    use serde::de::IntoDeserializer;
    use serde::Deserialize;
    for kind in PolicyKind::ALL {
        assert_eq!(kind.name().parse::<PolicyKind>(), Ok(kind));
        let read = PolicyKind::deserialize(kind.name().into_deserializer());
        assert_eq!(read, Ok::<_, serde::de::value::Error>(kind), "serde spells {kind} as the config does");
    }
    assert_eq!("fastest".parse::<PolicyKind>(), Err(UnknownPolicy("fastest".into())));
}

#[test]
fn an_unknown_name_lists_every_policy() {
    let message = UnknownPolicy("fastest".into()).to_string();
    assert!(message.starts_with("unknown placement policy \"fastest\": write one of "), "{message}");
    for kind in PolicyKind::ALL {
        assert!(message.contains(kind.name()), "{kind} missing from {message}");
    }
    assert!(message.ends_with(" or pack"), "{message}");
}

#[test]
fn occupied_slots_count_as_placed_in_every_policy() {
    let labels = Labels::from([(REGION_LABEL.to_string(), "eu-west".to_string())]);
    for kind in PolicyKind::ALL {
        let mut p = kind.build(&options());
        p.add(1, 2, &labels);
        p.add(2, 2, &labels);
        // Streams moved in with the streamlet (a policy switch).
        p.occupy(1);
        p.occupy(1);
        assert_eq!(p.load(1), Some((2, 2)), "{kind}");
        let any = Request { region: Some("eu-west".into()) };
        assert_eq!(p.place(&any), Some(2), "{kind}: the full one is skipped");
        assert_eq!(p.place(&any), Some(2), "{kind}");
        assert_eq!(p.place(&any), None, "{kind}");
        p.release(1);
        assert_eq!(p.place(&any), Some(1), "{kind}");
    }
}

#[test]
fn no_policy_chooses_a_draining_streamlet() {
    for kind in PolicyKind::ALL {
        let mut p = kind.build(&options());
        for w in 1..=3 {
            p.add(w, 3, &Labels::from([(REGION_LABEL.to_string(), "eu-west".to_string())]));
        }
        p.remove(2); // draining
        for _ in 0..6 {
            let w = p.place(&Request { region: Some("eu-west".into()) });
            assert!(matches!(w, Some(1 | 3)), "{kind} chose {w:?}");
        }
        assert_eq!(p.place(&Request::default()), None, "{kind}");
    }
}

proptest! {
    /// For every policy: no streamlet is ever over its capacity, a removed
    /// streamlet is never chosen, a placement is refused only when no
    /// streamlet has room, and `load` agrees with a plain model.
    #[test]
    fn every_policy_keeps_its_invariants(ops in proptest::collection::vec(op(), 0..200)) {
        for kind in PolicyKind::ALL {
            let mut p = kind.build(&options());
            // worker -> (active, capacity), for the placeable streamlets.
            let mut model: HashMap<WorkerKey, (u32, u32)> = HashMap::new();
            for op in &ops {
                match *op {
                    Op::Add { worker, capacity, region } => {
                        let mut labels = Labels::new();
                        if let Some(r) = region {
                            labels.insert(REGION_LABEL.to_string(), REGIONS[r].to_string());
                        }
                        p.add(worker, capacity, &labels);
                        model.remove(&worker);
                        if capacity > 0 {
                            model.insert(worker, (0, capacity));
                        }
                    }
                    Op::Remove(worker) => {
                        p.remove(worker);
                        model.remove(&worker);
                    }
                    Op::Place(region) => {
                        let request = Request { region: region.map(|r| REGIONS[r].to_string()) };
                        match p.place(&request) {
                            Some(w) => {
                                let Some((active, capacity)) = model.get_mut(&w) else {
                                    return Err(TestCaseError::fail(format!("{kind} chose {w}, not placeable")));
                                };
                                *active += 1;
                                prop_assert!(*active <= *capacity, "{} overfilled {}", kind, w);
                            }
                            None => prop_assert!(model.values().all(|(a, c)| a == c), "{} refused with room", kind),
                        }
                    }
                    Op::Release(worker) => {
                        p.release(worker);
                        if let Some((active, _)) = model.get_mut(&worker) {
                            *active = active.saturating_sub(1);
                        }
                    }
                }
                for w in 0..8 {
                    prop_assert_eq!(p.load(w), model.get(&w).copied(), "{} load of {}", kind, w);
                }
            }
        }
    }
}
