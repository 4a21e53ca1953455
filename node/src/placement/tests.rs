//! Placement's properties as specifications: determinism, order independence,
//! minimal movement under churn, proportional shares and bounded loads.
//!
//! Statistical checks use fixed-size inputs, a fixed proptest seed and a
//! tolerance of six binomial standard deviations, so they are deterministic
//! and would hold for practically any seed too.

use std::collections::BTreeSet;

use proptest::prelude::*;
use proptest::test_runner::RngSeed;

use super::bounded::capacities;
use super::*;

#[derive(Debug, Clone, PartialEq)]
struct Node {
    id: Vec<u8>,
    weight: f64,
}

impl Candidate for Node {
    fn id(&self) -> &[u8] {
        &self.id
    }
    fn weight(&self) -> f64 {
        self.weight
    }
}

fn node(salt: u64, i: usize, weight: f64) -> Node {
    Node {
        id: format!("node-{salt}-{i}").into_bytes(),
        weight,
    }
}

fn nodes(salt: u64, weights: &[f64]) -> Vec<Node> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &w)| node(salt, i, w))
        .collect()
}

fn keys(salt: u64, count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| format!("shard-{salt}-{i}").into_bytes())
        .collect()
}

fn ids<'a>(ranked: impl IntoIterator<Item = &'a Node>) -> Vec<Vec<u8>> {
    ranked.into_iter().map(|n| n.id.clone()).collect()
}

fn top1(key: &[u8], members: &[Node]) -> Option<Vec<u8>> {
    rank(key, members).next().map(|n| n.id.clone())
}

fn top_set(key: &[u8], members: &[Node], k: usize) -> BTreeSet<Vec<u8>> {
    rank(key, members).take(k).map(|n| n.id.clone()).collect()
}

/// Whether `observed` out of `trials` is within six standard deviations of
/// a binomial with success probability `p`.
fn within_six_sigma(observed: usize, trials: usize, p: f64) -> bool {
    let n = trials as f64;
    let sigma = (p * (1.0 - p) / n).sqrt();
    ((observed as f64 / n) - p).abs() <= 6.0 * sigma + 1.0 / n
}

/// Integer capacity weights 1..=8, as capacity slots would give.
fn weights(len: impl Into<proptest::collection::SizeRange>) -> impl Strategy<Value = Vec<f64>> {
    proptest::collection::vec((1u32..=8).prop_map(f64::from), len)
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        rng_seed: RngSeed::Fixed(0x5ca1_ab1e),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

const KEYS: usize = 2000;

#[test]
fn ranking_is_pinned_for_a_fixed_input() {
    // A change here reshuffles every shard in a running network.
    let members = nodes(0, &[1.0, 2.0, 3.0, 4.0, 1.0, 2.0, 3.0, 4.0]);
    let order: Vec<String> = rank(b"pinned-key", &members)
        .map(|n| String::from_utf8_lossy(&n.id).into_owned())
        .collect();
    assert_eq!(order, PINNED_ORDER);
}

/// Cross-checked against the C reference XXH3 (libxxhash 0.8.1).
const PINNED_ORDER: [&str; 8] = [
    "node-0-4", "node-0-7", "node-0-5", "node-0-3", "node-0-2", "node-0-0", "node-0-6", "node-0-1",
];

#[test]
fn equal_scores_rank_by_smallest_id_first() {
    let a = Entry {
        score: 1.5,
        id: b"a",
        index: 1,
    };
    let b = Entry {
        score: 1.5,
        id: b"b",
        index: 0,
    };
    let better = Entry {
        score: 1.6,
        id: b"z",
        index: 2,
    };
    assert!(a > b);
    assert!(better > a);
    let mut heap = BinaryHeap::from(vec![b, better, a]);
    let popped: Vec<&[u8]> = std::iter::from_fn(|| heap.pop().map(|e| e.id)).collect();
    assert_eq!(popped, [b"z", b"a", b"b"]);
}

#[test]
fn assign_bounded_rejects_bad_epsilon_and_empty_membership() {
    let members = nodes(0, &[1.0, 1.0]);
    let batch = keys(0, 3);
    assert_eq!(
        assign_bounded(&batch, &members, -0.1),
        Err(PlacementError::InvalidEpsilon(-0.1))
    );
    assert!(matches!(
        assign_bounded(&batch, &members, f64::NAN),
        Err(PlacementError::InvalidEpsilon(_))
    ));
    let unusable = nodes(0, &[0.0, -1.0, f64::NAN]);
    assert_eq!(
        assign_bounded(&batch, &unusable, DEFAULT_EPSILON),
        Err(PlacementError::NoCandidates)
    );
    assert_eq!(
        assign_bounded::<Vec<u8>, Node>(&[], &unusable, DEFAULT_EPSILON),
        Ok(Vec::new())
    );
}

proptest! {
    #![proptest_config(config(32))]

    #[test]
    fn ranking_is_deterministic_and_strictly_ordered(salt: u64, w in weights(1..16)) {
        let members = nodes(salt, &w);
        for key in keys(salt, 50) {
            let first = ids(rank(&key, &members));
            prop_assert_eq!(&first, &ids(rank(&key, &members)));
            prop_assert_eq!(first.len(), members.len());
            let scored: Vec<(f64, &Vec<u8>)> = first
                .iter()
                .map(|id| {
                    let m = members.iter().find(|m| &m.id == id).expect("ranked member exists");
                    (score::score(&key, id, m.weight).expect("usable weight"), id)
                })
                .collect();
            for pair in scored.windows(2) {
                let ((s0, id0), (s1, id1)) = (pair[0], pair[1]);
                prop_assert!(s0 > s1 || (s0 == s1 && id0 < id1), "not strictly ranked: {pair:?}");
            }
        }
    }

    #[test]
    fn member_order_does_not_change_the_ranking(
        (w, perm) in weights(1..16).prop_flat_map(|w| {
            let indices: Vec<usize> = (0..w.len()).collect();
            (Just(w), Just(indices).prop_shuffle())
        }),
        salt: u64,
    ) {
        let members = nodes(salt, &w);
        let shuffled: Vec<Node> = perm.iter().map(|&i| members[i].clone()).collect();
        for key in keys(salt, 100) {
            prop_assert_eq!(ids(rank(&key, &members)), ids(rank(&key, &shuffled)));
        }
        let batch = keys(salt, 300);
        prop_assert_eq!(
            ids(assign_bounded(&batch, &members, DEFAULT_EPSILON).expect("placeable")),
            ids(assign_bounded(&batch, &shuffled, DEFAULT_EPSILON).expect("placeable"))
        );
    }

    #[test]
    fn unusable_weights_are_never_ranked(
        w in proptest::collection::vec(
            prop_oneof![Just(0.0), Just(-1.0), Just(f64::NAN), Just(f64::INFINITY), Just(1.0), Just(3.0)],
            1..12,
        ),
        salt: u64,
    ) {
        let members = nodes(salt, &w);
        let usable = w.iter().filter(|&&x| score::usable_weight(x)).count();
        for key in keys(salt, 50) {
            let ranked: Vec<&Node> = rank(&key, &members).collect();
            prop_assert_eq!(ranked.len(), usable);
            prop_assert!(ranked.iter().all(|n| score::usable_weight(n.weight)));
        }
    }

    #[test]
    fn joining_member_takes_only_keys_that_move_to_it(w in weights(1..16), new_weight in 1u32..=8, salt: u64) {
        let before = nodes(salt, &w);
        let mut after = before.clone();
        let newcomer = node(salt, w.len(), f64::from(new_weight));
        after.push(newcomer.clone());
        let mut moved = 0;
        for key in keys(salt, KEYS) {
            let (old, new) = (top1(&key, &before), top1(&key, &after));
            if old != new {
                prop_assert_eq!(new.as_ref(), Some(&newcomer.id), "key moved to an old member");
                moved += 1;
            }
            let mut allowed = top_set(&key, &before, 3);
            allowed.insert(newcomer.id.clone());
            prop_assert!(top_set(&key, &after, 3).is_subset(&allowed), "top-3 gained an old member");
        }
        let total: f64 = w.iter().sum::<f64>() + f64::from(new_weight);
        let expected = f64::from(new_weight) / total;
        prop_assert!(within_six_sigma(moved, KEYS, expected), "moved {moved}/{KEYS}, expected {expected}");
    }

    #[test]
    fn leaving_member_moves_only_its_own_keys(w in weights(2..16), leaver in any::<prop::sample::Index>(), salt: u64) {
        let before = nodes(salt, &w);
        let mut after = before.clone();
        let gone = after.remove(leaver.index(before.len()));
        let mut moved = 0;
        for key in keys(salt, KEYS) {
            let (old, new) = (top1(&key, &before), top1(&key, &after));
            if old != new {
                prop_assert_eq!(old.as_ref(), Some(&gone.id), "a key left a member that stayed");
                moved += 1;
            }
            let mut kept = top_set(&key, &before, 3);
            kept.remove(&gone.id);
            prop_assert!(kept.is_subset(&top_set(&key, &after, 3)), "top-3 lost a member that stayed");
        }
        let expected = gone.weight / w.iter().sum::<f64>();
        prop_assert!(within_six_sigma(moved, KEYS, expected), "moved {moved}/{KEYS}, expected {expected}");
    }

    #[test]
    fn top1_share_is_proportional_to_weight(w in weights(2..9), salt: u64) {
        let members = nodes(salt, &w);
        let batch = keys(salt, 4000);
        let total: f64 = w.iter().sum();
        let winners: Vec<Option<Vec<u8>>> = batch.iter().map(|key| top1(key, &members)).collect();
        for member in &members {
            let won = winners.iter().filter(|id| id.as_ref() == Some(&member.id)).count();
            let expected = member.weight / total;
            prop_assert!(within_six_sigma(won, batch.len(), expected),
                "{} won {won}/{}, expected share {expected}", String::from_utf8_lossy(&member.id), batch.len());
        }
    }

    #[test]
    fn choose_after_continues_where_choose_stopped(w in weights(1..20), k in 1usize..5, salt: u64) {
        let members = nodes(salt, &w);
        let eligible = |n: &Node| n.id.last().is_some_and(|b| b % 3 != 0);
        for key in keys(salt, 50) {
            let first = choose(&key, &members, k, eligible);
            let next = choose_after(&key, &members, k, k, eligible);
            let both = choose(&key, &members, 2 * k, eligible);
            let expected: Vec<&Node> = rank(&key, &members).filter(|n| eligible(n)).take(2 * k).collect();
            prop_assert_eq!(ids(both.iter().copied()), ids(expected));
            prop_assert_eq!(ids(first.into_iter().chain(next)), ids(both));
        }
    }

    #[test]
    fn assign_bounded_keeps_every_load_within_its_cap(
        w in weights(1..12),
        count in 1usize..1500,
        eps in prop_oneof![Just(0.0), Just(0.1), Just(0.5)],
        salt: u64,
    ) {
        let members = nodes(salt, &w);
        let batch = keys(salt, count);
        let assigned = assign_bounded(&batch, &members, eps).expect("placeable");
        prop_assert_eq!(assigned.len(), count);
        let total: f64 = w.iter().sum();
        for member in &members {
            let load = assigned.iter().filter(|n| n.id == member.id).count();
            let bound = ((1.0 + eps) * member.weight / total * count as f64).ceil() as usize;
            prop_assert!(load <= bound, "load {load} above bound {bound}");
        }
        prop_assert_eq!(ids(assigned), ids(assign_bounded(&batch, &members, eps).expect("placeable")));
    }

    #[test]
    fn assign_bounded_passes_a_key_down_only_past_full_members(w in weights(1..12), count in 1usize..1000, salt: u64) {
        let members = nodes(salt, &w);
        let batch = keys(salt, count);
        let assigned = assign_bounded(&batch, &members, DEFAULT_EPSILON).expect("placeable");
        let caps = capacities(&members, count, DEFAULT_EPSILON).expect("usable weights");
        let full: BTreeSet<&[u8]> = members
            .iter()
            .zip(&caps)
            .filter(|(m, cap)| assigned.iter().filter(|n| n.id == m.id).count() == **cap)
            .map(|(m, _)| m.id.as_slice())
            .collect();
        for (key, chosen) in batch.iter().zip(&assigned) {
            for better in rank(key, &members).take_while(|n| n.id != chosen.id) {
                prop_assert!(full.contains(better.id.as_slice()), "skipped a member with room");
            }
        }
    }

    #[test]
    fn assign_bounded_with_unbounded_slack_is_plain_top1(w in weights(1..12), salt: u64) {
        let members = nodes(salt, &w);
        let batch = keys(salt, 300);
        let assigned = assign_bounded(&batch, &members, f64::INFINITY).expect("placeable");
        for (key, chosen) in batch.iter().zip(assigned) {
            prop_assert_eq!(top1(key, &members), Some(chosen.id.clone()));
        }
    }
}
