//! The rendezvous score of one (key, member) pair, bit-for-bit specified.
//!
//! Every node and requester must compute the same ranking for a shard, even
//! when they run different builds on different platforms, so nothing here may
//! depend on a library whose output can change: the hash is XXH3-64 (a frozen
//! algorithm with published test vectors) and the logarithm is computed here
//! with IEEE-754 double arithmetic only (`+ - * /`, each exactly rounded), not
//! with the platform's `ln`, whose last bit differs between libm versions.

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// Hash of a placement key; the seed of every member's hash for that key.
pub(crate) fn key_seed(key: &[u8]) -> u64 {
    xxh3_64(key)
}

/// The 64-bit hash of a (key, member id) pair:
/// `XXH3_64bits_withSeed(id, XXH3_64bits(key))`.
pub fn hash(key: &[u8], id: &[u8]) -> u64 {
    hash_seeded(key_seed(key), id)
}

pub(crate) fn hash_seeded(seed: u64, id: &[u8]) -> u64 {
    xxh3_64_with_seed(id, seed)
}

/// Maps a hash into the open interval (0, 1): `(2 * (h >> 12) + 1) / 2^53`.
///
/// The numerator is an odd integer below 2^53, so the conversion is exact and
/// the result is never 0 or 1 (`ln` is finite and non-zero).
pub fn unit_interval(h: u64) -> f64 {
    const TWO_POW_MINUS_53: f64 = 1.0 / 9_007_199_254_740_992.0;
    (((h >> 12) << 1) | 1) as f64 * TWO_POW_MINUS_53
}

/// Whether a member with this weight can ever be chosen: finite and > 0.
pub fn usable_weight(weight: f64) -> bool {
    weight.is_finite() && weight > 0.0
}

/// Rendezvous score `-weight / ln(u)` with `u = unit_interval(hash(key, id))`;
/// `None` when the weight is not usable (zero, negative, NaN or infinite).
pub fn score(key: &[u8], id: &[u8], weight: f64) -> Option<f64> {
    score_seeded(key_seed(key), id, weight)
}

pub(crate) fn score_seeded(seed: u64, id: &[u8], weight: f64) -> Option<f64> {
    if !usable_weight(weight) {
        return None;
    }
    let u = unit_interval(hash_seeded(seed, id));
    Some(weight / -ln(u))
}

/// `ln(2)` split so that `e * LN2_HI` is exact for any binary exponent `e`
/// (fdlibm's `ln2_hi` and `ln2_lo`, given by their bits).
const LN2_HI: f64 = f64::from_bits(0x3FE6_2E42_FEE0_0000);
const LN2_LO: f64 = f64::from_bits(0x3DEA_39EF_3579_3C76);

/// `1 / (2n + 1)` for n = 1..=10: the series `atanh(s) / s` to 21st order,
/// enough for double precision since `|s| < 0.1716`.
const ATANH_COEFFICIENTS: [f64; 10] = [
    1.0 / 3.0,
    1.0 / 5.0,
    1.0 / 7.0,
    1.0 / 9.0,
    1.0 / 11.0,
    1.0 / 13.0,
    1.0 / 15.0,
    1.0 / 17.0,
    1.0 / 19.0,
    1.0 / 21.0,
];

/// Natural logarithm of a positive normal `x`, within ~2 ulp of the true value
/// and bit-identical on every IEEE-754 platform.
///
/// `x = 2^e * m` with `m` in `[sqrt(2)/2, sqrt(2)]`; `ln(m) = 2 atanh(s)` with
/// `s = (m - 1) / (m + 1)`, summed by Horner's rule from the highest term.
pub(crate) fn ln(x: f64) -> f64 {
    debug_assert!(
        x.is_normal() && x > 0.0,
        "ln needs a positive normal, got {x}"
    );
    const MANTISSA_MASK: u64 = (1 << 52) - 1;
    const EXPONENT_ONE: u64 = 1023 << 52;
    let bits = x.to_bits();
    let mut e = ((bits >> 52) & 0x7ff) as i32 - 1023;
    let mut m = f64::from_bits((bits & MANTISSA_MASK) | EXPONENT_ONE);
    if m > std::f64::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    // Exact: m and 1 are within a factor of two of each other (Sterbenz).
    let f = m - 1.0;
    let s = f / (2.0 + f);
    let z = s * s;
    let mut p = 0.0;
    for c in ATANH_COEFFICIENTS.iter().rev() {
        p = c + z * p;
    }
    let two_s = 2.0 * s;
    let e = f64::from(e);
    e * LN2_HI + (two_s + (two_s * z * p + e * LN2_LO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::RngSeed;

    #[test]
    fn xxh3_matches_the_published_test_vector() {
        // XXH3_64bits of the empty input, from the xxHash reference suite.
        assert_eq!(xxh3_64(b""), 0x2D06_8005_38D3_94C2);
    }

    #[test]
    fn hash_construction_is_pinned() {
        // Changing any of these values changes which nodes every shard goes
        // to, and splits a network whose nodes run different builds.
        assert_eq!(hash(b"shard-key", b"node-a"), PINNED_HASH);
        assert_eq!(unit_interval(PINNED_HASH).to_bits(), PINNED_UNIT_BITS);
        assert_eq!(
            score(b"shard-key", b"node-a", 3.0).map(f64::to_bits),
            Some(PINNED_SCORE_BITS)
        );
    }

    // Cross-checked against the C reference library (libxxhash 0.8.1,
    // XXH3_64bits / XXH3_64bits_withSeed) and a libm `log`.
    const PINNED_HASH: u64 = 3_926_415_452_899_746_416;
    const PINNED_UNIT_BITS: u64 = 4_596_836_800_471_980_244;
    const PINNED_SCORE_BITS: u64 = 4_611_411_458_592_404_805;

    #[test]
    fn unit_interval_stays_strictly_inside_zero_and_one() {
        for h in [0, 1, 4095, 4096, u64::MAX - 4096, u64::MAX] {
            let u = unit_interval(h);
            assert!(u > 0.0 && u < 1.0, "h={h:#x} gave u={u}");
            assert!(
                ln(u) < 0.0 && ln(u).is_finite(),
                "h={h:#x} gave ln(u)={}",
                ln(u)
            );
        }
    }

    #[test]
    fn ln_of_extremes_and_powers_of_two_is_exact_enough() {
        assert_eq!(ln(1.0), 0.0);
        assert_eq!(ln(0.5), -std::f64::consts::LN_2);
        let smallest = unit_interval(0);
        assert!((ln(smallest) - smallest.ln()).abs() <= 4.0 * f64::EPSILON * 37.0);
    }

    #[test]
    fn unusable_weights_have_no_score() {
        for w in [0.0, -0.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(score(b"k", b"id", w), None, "weight {w}");
        }
        assert!(score(b"k", b"id", f64::MIN_POSITIVE).is_some());
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 512,
            rng_seed: RngSeed::Fixed(0x5ca1e),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn ln_agrees_with_libm_within_a_few_ulp(h: u64) {
            let u = unit_interval(h);
            let (ours, libm) = (ln(u), u.ln());
            prop_assert!((ours - libm).abs() <= 4.0 * f64::EPSILON * libm.abs(),
                "u={u}: ours={ours} libm={libm}");
        }

        #[test]
        fn score_grows_with_weight(key: Vec<u8>, id: Vec<u8>, w in 1e-6f64..1e6) {
            let lighter = score(&key, &id, w);
            let heavier = score(&key, &id, w * 2.0);
            prop_assert!(lighter < heavier);
        }
    }
}
