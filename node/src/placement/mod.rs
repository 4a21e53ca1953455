//! Placement: which members may bid for a shard, by weighted rendezvous
//! hashing (highest random weight) over the membership table.
//!
//! Pure and deterministic: no I/O, no clock, no randomness, no libp2p types.
//! Callers implement [`Candidate`] for whatever describes a member (the
//! network code for its `NodeInfo`): stable identity bytes and a weight,
//! normally the member's capacity in slots.
//!
//! # Construction (frozen: every node must compute the same ranking)
//!
//! For a placement key `key` and a member with id bytes `id` and weight `w`:
//!
//! ```text
//! h     = XXH3_64bits_withSeed(id, seed = XXH3_64bits(key))   // xxHash 0.8 XXH3, 64-bit
//! u     = (2 * (h >> 12) + 1) / 2^53                          // exact; 0 < u < 1
//! score = -w / ln(u)                                          // ln: see score.rs
//! ```
//!
//! `ln` is computed in [`score`] with IEEE-754 double `+ - * /` only, in a
//! fixed order, so the score is bit-identical across platforms, compilers
//! and releases (a reimplementation must use the same steps to agree on exact
//! ties; one using a libm `ln` disagrees only where two scores are within a
//! couple of ulp). Members rank by score, highest first; equal scores rank by
//! id bytes, lexicographically smallest first, so the order is total.
//! A weight that is zero, negative, NaN or infinite is never ranked.
//!
//! # Properties (tested in this module)
//!
//! - Deterministic, and independent of the order of `members` (given
//!   distinct ids; members sharing an id tie-break by position).
//! - Stable under churn: when a member joins, the only keys whose top-1
//!   changes are those that move *to* it, an expected `w_new / W_total`
//!   fraction (`1/(N+1)` with equal weights); when a member leaves, only the
//!   keys whose top-1 was that member move. The same holds for the top-k set
//!   (`k/(N+1)` and `k/N` with equal weights).
//! - Proportional: a member is the top-1 of a key with probability
//!   `w / W_total`.
//! - Bounded loads ([`assign_bounded`]): in a batch of `K` keys no member
//!   receives more than `ceil((1 + eps) * w / W_total * K)` keys; overflow goes
//!   to the next member in that key's ranking.

mod bounded;
pub mod score;
#[cfg(test)]
mod tests;

use std::cmp::Ordering;
use std::collections::BinaryHeap;

pub use bounded::{DEFAULT_EPSILON, PlacementError, assign_bounded};

/// A member that placement can rank: identity bytes plus a relative weight.
pub trait Candidate {
    /// Stable identity bytes (e.g. a libp2p peer id's bytes); must be unique.
    fn id(&self) -> &[u8];
    /// Relative capacity (e.g. capacity slots); zero, negative, NaN or infinite: never chosen.
    fn weight(&self) -> f64;
}

impl<C: Candidate + ?Sized> Candidate for &C {
    fn id(&self) -> &[u8] {
        (**self).id()
    }
    fn weight(&self) -> f64 {
        (**self).weight()
    }
}

/// Ranks `members` for `key`, best first, lazily: computing the scores costs
/// O(N), each member taken from the iterator O(log N).
pub fn rank<'a, M: Candidate>(key: &[u8], members: &'a [M]) -> Ranking<'a, M> {
    let seed = score::key_seed(key);
    let entries: Vec<Entry<'a>> = members
        .iter()
        .enumerate()
        .filter_map(|(index, member)| {
            let id = member.id();
            score::score_seeded(seed, id, member.weight()).map(|score| Entry { score, id, index })
        })
        .collect();
    Ranking {
        members,
        heap: BinaryHeap::from(entries),
    }
}

/// The first `k` members of the ranking for `key` that pass `eligible`.
pub fn choose<'a, M: Candidate>(
    key: &[u8],
    members: &'a [M],
    k: usize,
    eligible: impl Fn(&M) -> bool,
) -> Vec<&'a M> {
    choose_after(key, members, 0, k, eligible)
}

/// The next `k` eligible members after skipping the first `skip` eligible
/// ones: widening a bid round asks `choose_after(key, members, k, k, ..)`.
pub fn choose_after<'a, M: Candidate>(
    key: &[u8],
    members: &'a [M],
    skip: usize,
    k: usize,
    eligible: impl Fn(&M) -> bool,
) -> Vec<&'a M> {
    rank(key, members)
        .filter(|member| eligible(member))
        .skip(skip)
        .take(k)
        .collect()
}

/// The members of a ranking, best first; see [`rank`].
pub struct Ranking<'a, M> {
    members: &'a [M],
    heap: BinaryHeap<Entry<'a>>,
}

impl<M> Ranking<'_, M> {
    /// Position in `members` of the next member, without taking it.
    fn peek_index(&self) -> Option<usize> {
        self.heap.peek().map(|entry| entry.index)
    }

    fn next_index(&mut self) -> Option<usize> {
        self.heap.pop().map(|entry| entry.index)
    }
}

impl<'a, M> Iterator for Ranking<'a, M> {
    type Item = &'a M;

    fn next(&mut self) -> Option<&'a M> {
        self.next_index().map(|index| &self.members[index])
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.heap.len(), Some(self.heap.len()))
    }
}

impl<M> ExactSizeIterator for Ranking<'_, M> {}

/// One ranked member; `Ord` is the ranking (greater = better).
struct Entry<'a> {
    score: f64,
    id: &'a [u8],
    index: usize,
}

impl Ord for Entry<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.id.cmp(self.id))
            .then_with(|| other.index.cmp(&self.index))
    }
}

impl PartialOrd for Entry<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Entry<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Entry<'_> {}
