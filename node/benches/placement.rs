//! Placement benchmark: how many keys move when a member joins or leaves, how
//! even the load is, whether weighted shares come out proportional, and what
//! ranking costs; rendezvous placement side by side with `hash mod N`.
//!
//! Run with `cargo bench -p shoal-node --bench placement`; prints markdown.

use std::hint::black_box;
use std::time::Instant;

use sha2::{Digest, Sha256};
use shoal_node::placement::{self, Candidate, DEFAULT_EPSILON, assign_bounded, rank};
use xxhash_rust::xxh3::xxh3_64;

const KEYS: usize = 100_000;
const SIZES: [usize; 3] = [10, 100, 1000];
const CLASS_WEIGHTS: [f64; 3] = [1.0, 2.0, 4.0];

/// A member shaped like a real one: a 38-byte ed25519 peer id.
#[derive(Clone)]
struct Member {
    tag: u32,
    id: Vec<u8>,
    weight: f64,
}

impl Candidate for Member {
    fn id(&self) -> &[u8] {
        &self.id
    }
    fn weight(&self) -> f64 {
        self.weight
    }
}

fn member(tag: u32, weight: f64) -> Member {
    // identity multihash of a protobuf-encoded ed25519 public key
    let mut id = vec![0x00, 0x24, 0x08, 0x01, 0x12, 0x20];
    id.extend_from_slice(&Sha256::digest(format!("member-{tag}")));
    Member { tag, id, weight }
}

fn members(n: usize, weight: impl Fn(usize) -> f64) -> Vec<Member> {
    (0..n).map(|i| member(i as u32, weight(i))).collect()
}

/// Placement keys shaped like real ones: 32-byte content digests.
fn keys(count: usize) -> Vec<[u8; 32]> {
    (0..count)
        .map(|i| Sha256::digest(format!("shard-{i}")).into())
        .collect()
}

/// Top-3 member tags per key, best first.
fn rendezvous_top3(keys: &[[u8; 32]], members: &[Member]) -> Vec<[u32; 3]> {
    keys.iter()
        .map(|key| {
            let mut top = [u32::MAX; 3];
            for (slot, m) in top.iter_mut().zip(rank(key, members)) {
                *slot = m.tag;
            }
            top
        })
        .collect()
}

/// `hash mod N` over members sorted by id; "top-3" is the next two slots on.
fn modulo_top3(keys: &[[u8; 32]], members: &[Member]) -> Vec<[u32; 3]> {
    let mut sorted: Vec<&Member> = members.iter().collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    let n = sorted.len() as u64;
    keys.iter()
        .map(|key| {
            let h = xxh3_64(key) % n;
            std::array::from_fn(|j| sorted[((h + j as u64) % n) as usize].tag)
        })
        .collect()
}

/// Fractions of keys whose top-1, and whose top-3 set, differ.
fn changed(before: &[[u32; 3]], after: &[[u32; 3]]) -> (f64, f64) {
    let mut top1 = 0;
    let mut top3 = 0;
    for (b, a) in before.iter().zip(after) {
        top1 += usize::from(b[0] != a[0]);
        let (mut bs, mut as_) = (*b, *a);
        bs.sort_unstable();
        as_.sort_unstable();
        top3 += usize::from(bs != as_);
    }
    (
        top1 as f64 / before.len() as f64,
        top3 as f64 / before.len() as f64,
    )
}

/// Keys per member tag (tags are 0..n).
fn loads(tags: impl Iterator<Item = u32>, n: usize) -> Vec<usize> {
    let mut loads = vec![0; n];
    for tag in tags {
        loads[tag as usize] += 1;
    }
    loads
}

fn max_over_mean(loads: &[usize]) -> f64 {
    let mean = loads.iter().sum::<usize>() as f64 / loads.len() as f64;
    *loads.iter().max().unwrap_or(&0) as f64 / mean
}

fn bounded_tags(keys: &[[u8; 32]], members: &[Member]) -> Vec<u32> {
    assign_bounded(keys, members, DEFAULT_EPSILON)
        .expect("benchmark members all have positive weights")
        .into_iter()
        .map(|m| m.tag)
        .collect()
}

/// Nanoseconds per call of `f` over `keys`, best of three runs.
fn ns_per_call(keys: &[[u8; 32]], mut f: impl FnMut(&[u8; 32])) -> f64 {
    (0..3)
        .map(|_| {
            let start = Instant::now();
            for key in keys {
                f(key);
            }
            start.elapsed().as_nanos() as f64 / keys.len() as f64
        })
        .fold(f64::INFINITY, f64::min)
}

struct Rows {
    churn: Vec<String>,
    load: Vec<String>,
    weighted: Vec<String>,
    cost: Vec<String>,
}

fn measure(n: usize, keys: &[[u8; 32]], rows: &mut Rows) {
    let base = members(n, |_| 1.0);
    let mut joined = base.clone();
    joined.push(member(n as u32, 1.0));
    let mut left = base.clone();
    left.remove(n / 2);

    let rv = rendezvous_top3(keys, &base);
    let md = modulo_top3(keys, &base);
    let events = [
        ("join", &joined, n + 1, "k/(N+1)"),
        ("leave", &left, n, "k/N"),
    ];
    for (event, after, denominator, formula) in events {
        let (rv1, rv3) = changed(&rv, &rendezvous_top3(keys, after));
        let (md1, md3) = changed(&md, &modulo_top3(keys, after));
        for (k, rv_frac, md_frac) in [(1, rv1, md1), (3, rv3, md3)] {
            let optimum = k as f64 / denominator as f64;
            rows.churn.push(format!(
                "| {n} | {event} | top-{k} | {rv_frac:.4} | {optimum:.4} ({formula}) | {md_frac:.4} |"
            ));
        }
    }

    let plain = loads(rv.iter().map(|top| top[0]), n);
    let bounded = loads(bounded_tags(keys, &base).into_iter(), n);
    let modulo = loads(md.iter().map(|top| top[0]), n);
    let mean = keys.len() as f64 / n as f64;
    let cap = ((1.0 + DEFAULT_EPSILON) * mean).ceil();
    rows.load.push(format!(
        "| {n} | {mean:.0} | {:.3} | {:.3} | {:.3} | {:.3} |",
        max_over_mean(&plain),
        max_over_mean(&bounded),
        cap / mean,
        max_over_mean(&modulo),
    ));

    let weighted = members(n, |i| CLASS_WEIGHTS[i % 3]);
    let plain = loads(rendezvous_top3(keys, &weighted).iter().map(|top| top[0]), n);
    let bounded = loads(bounded_tags(keys, &weighted).into_iter(), n);
    let total_weight: f64 = weighted.iter().map(|m| m.weight).sum();
    for (class, w) in CLASS_WEIGHTS.iter().enumerate() {
        let in_class = |loads: &[usize]| -> usize { loads.iter().skip(class).step_by(3).sum() };
        let count = (class..n).step_by(3).count();
        rows.weighted.push(format!(
            "| {n} | {w} | {count} | {:.4} | {:.4} | {:.4} |",
            count as f64 * w / total_weight,
            in_class(&plain) as f64 / keys.len() as f64,
            in_class(&bounded) as f64 / keys.len() as f64,
        ));
    }

    let sample = &keys[..keys.len().min(200_000 / n)];
    let top3 = ns_per_call(sample, |key| {
        black_box(rank(black_box(key), &base).take(3).count());
    });
    let widen = ns_per_call(sample, |key| {
        black_box(placement::choose_after(black_box(key), &base, 3, 3, |_| {
            true
        }));
    });
    rows.cost.push(format!(
        "| {n} | {top3:.0} | {widen:.0} | {:.1} |",
        top3 / n as f64
    ));
}

/// The per-(key, member) hash alone: the chosen XXH3 construction against
/// SHA-256 of key || id, the alternative considered.
fn hash_costs(keys: &[[u8; 32]]) -> (f64, f64) {
    let id = member(0, 1.0).id;
    let xxh3 = ns_per_call(keys, |key| {
        black_box(placement::score::hash(black_box(key), &id));
    });
    let sha256 = ns_per_call(keys, |key| {
        let digest = Sha256::new()
            .chain_update(black_box(key))
            .chain_update(&id)
            .finalize();
        black_box(digest);
    });
    (xxh3, sha256)
}

fn main() {
    let started = Instant::now();
    let keys = keys(KEYS);
    let mut rows = Rows {
        churn: Vec::new(),
        load: Vec::new(),
        weighted: Vec::new(),
        cost: Vec::new(),
    };
    for n in SIZES {
        measure(n, &keys, &mut rows);
    }
    let (xxh3, sha256) = hash_costs(&keys);

    println!("{KEYS} keys (32-byte digests); members have 38-byte peer ids.\n");
    println!(
        "Fraction of keys whose placement changes when one member joins or leaves (equal weights):\n"
    );
    println!("| N | event | set | rendezvous | optimum | hash mod N |");
    println!("|---:|---|---|---:|---:|---:|");
    rows.churn.iter().for_each(|row| println!("{row}"));
    println!(
        "\nLoad, top-1 keys per member, max / mean (equal weights; bounded: eps = {DEFAULT_EPSILON}):\n"
    );
    println!("| N | mean | rendezvous | bounded | bound ceil((1+eps)·mean)/mean | hash mod N |");
    println!("|---:|---:|---:|---:|---:|---:|");
    rows.load.iter().for_each(|row| println!("{row}"));
    println!("\nWeights 1:2:4 (member i in class i mod 3), share of keys per class:\n");
    println!("| N | class weight | members | weight share | rendezvous | bounded |");
    println!("|---:|---:|---:|---:|---:|---:|");
    rows.weighted.iter().for_each(|row| println!("{row}"));
    println!("\nCost per shard (one thread, release):\n");
    println!("| N | ns per rank().take(3) | ns per choose_after(skip 3, k 3) | ns per member |");
    println!("|---:|---:|---:|---:|");
    rows.cost.iter().for_each(|row| println!("{row}"));
    println!(
        "\nHash of one (key, member) pair: XXH3 construction {xxh3:.1} ns, SHA-256(key || id) {sha256:.1} ns."
    );
    println!(
        "\nBenchmark ran in {:.1} s.",
        started.elapsed().as_secs_f64()
    );
}
