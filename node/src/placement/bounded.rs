//! Batch placement with bounded loads: rendezvous hashing, except that a
//! member already holding its share of the batch passes further keys on to
//! the next member in their ranking.
//!
//! Plain rendezvous hashing is balanced only on average; over a batch of K
//! keys the busiest of N members receives noticeably more than K/N. Bounding
//! each member at `ceil((1 + eps) * share)` caps that, at the cost of moving
//! the overflow keys (and only them) one or more places down their ranking.

use super::{Candidate, rank, score};

/// Default load slack: no member gets more than 110% of its weighted share.
pub const DEFAULT_EPSILON: f64 = 0.1;

/// Why a batch could not be placed.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum PlacementError {
    /// The load slack was negative or NaN.
    #[error(
        "load slack epsilon must be zero or positive, got {0}; \
         use placement::DEFAULT_EPSILON ({DEFAULT_EPSILON}) if unsure"
    )]
    InvalidEpsilon(f64),
    /// Keys were given but no member can take any.
    #[error(
        "no member has a positive, finite weight, so no key can be placed; \
         check the members' capacity slots"
    )]
    NoCandidates,
}

/// For each key, in order, the member it is assigned to, such that no member
/// receives more than `ceil((1 + eps) * weight / total_weight * keys.len())`
/// keys; a key whose first choice is full goes to the next member in its
/// ranking that has room. Deterministic: keys are processed in the given
/// order. `eps = f64::INFINITY` gives plain rendezvous top-1.
pub fn assign_bounded<'a, K: AsRef<[u8]>, M: Candidate>(
    keys: &[K],
    members: &'a [M],
    eps: f64,
) -> Result<Vec<&'a M>, PlacementError> {
    if eps.is_nan() || eps < 0.0 {
        return Err(PlacementError::InvalidEpsilon(eps));
    }
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let caps = capacities(members, keys.len(), eps).ok_or(PlacementError::NoCandidates)?;
    let mut loads = vec![0usize; members.len()];
    let mut assigned = Vec::with_capacity(keys.len());
    for key in keys {
        let mut ranking = rank(key.as_ref(), members);
        let first = ranking.peek_index().ok_or(PlacementError::NoCandidates)?;
        // The caps add up to at least (1 + eps) * K >= K, so some member always
        // has room; only float rounding with eps = 0 could leave none, and then
        // the key goes to its first choice rather than nowhere.
        let chosen = std::iter::from_fn(|| ranking.next_index())
            .find(|&index| loads[index] < caps[index])
            .unwrap_or(first);
        loads[chosen] += 1;
        assigned.push(&members[chosen]);
    }
    Ok(assigned)
}

/// Each member's cap for a batch of `keys` keys, by position in `members`
/// (0 for unusable weights); `None` if no weight is usable.
///
/// The total weight is summed in ascending order of weight so it, and hence
/// every cap, does not depend on the order of `members`.
pub(super) fn capacities<M: Candidate>(members: &[M], keys: usize, eps: f64) -> Option<Vec<usize>> {
    let mut weights: Vec<f64> = members
        .iter()
        .map(Candidate::weight)
        .filter(|&w| score::usable_weight(w))
        .collect();
    if weights.is_empty() {
        return None;
    }
    weights.sort_by(f64::total_cmp);
    let total: f64 = weights.iter().sum();
    let batch = keys as f64;
    let caps = members
        .iter()
        .map(|member| {
            let w = member.weight();
            if score::usable_weight(w) {
                // `as` saturates, so eps = inf gives usize::MAX.
                ((1.0 + eps) * (w / total) * batch).ceil() as usize
            } else {
                0
            }
        })
        .collect();
    Some(caps)
}
