//! Filecoin piece commitment (CommP) of a byte stream, and its piece CID.
//!
//! As Filecoin defines it (go-fil-commp-hashhash, rust-fil-proofs):
//!
//! 1. The payload is zero-padded up to the unpadded piece size, `127/128` of
//!    the padded piece size: the next power of two, at least 128 bytes,
//!    that holds `ceil(len / 127) * 128` bytes.
//! 2. fr32 padding: every 127 bytes (1016 bits) become 128 bytes, as four
//!    254-bit runs each followed by two zero bits, so each 32-byte leaf is a
//!    valid BLS12-381 field element.
//! 3. A binary Merkle tree over the 32-byte leaves with
//!    sha2-256-trunc254-padded: `sha256(left || right)` with the two top bits
//!    of the last byte cleared. CommP is the root.
//! 4. The piece CID is CIDv1, codec fil-commitment-unsealed (0xf101),
//!    multihash sha2-256-trunc254-padded (0x1012) over CommP.
//!
//! The tree is built as a stack of at most one pending hash per level, so
//! memory is `O(log n)`; the zero padding at the end is folded in with
//! precomputed all-zero subtree roots instead of hashing zeros.

use std::io::{self, Read, Write};

use multihash::Multihash;
use sha2::compress256;
use sha2::digest::generic_array::GenericArray;

use super::Cid;

/// Multicodec of unsealed piece commitments.
pub const FIL_COMMITMENT_UNSEALED: u64 = 0xf101;
/// Multihash code of sha2-256-trunc254-padded.
pub const SHA2_256_TRUNC254_PADDED: u64 = 0x1012;
/// The smallest piece, in padded bytes.
pub const MIN_PADDED_PIECE: u64 = 128;

/// sha2-256 initial hash value.
const SHA256_IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// Why a piece commitment could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum CommPError {
    /// Reading the payload failed.
    #[error("cannot read the payload: {0}")]
    Read(#[from] io::Error),
    /// An empty payload has no piece.
    #[error("cannot compute a piece commitment of an empty payload")]
    Empty,
    /// More than a 2^63-byte piece.
    #[error("payload of {0} bytes is too large for a piece")]
    TooLarge(u64),
}

/// A piece commitment and its sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PieceCommitment {
    /// The 32-byte CommP (Merkle root).
    pub commp: [u8; 32],
    /// Padded piece size: a power of two, at least 128.
    pub padded_size: u64,
    /// Unpadded piece size: `padded_size / 128 * 127`.
    pub unpadded_size: u64,
    /// Payload bytes actually consumed (before zero padding).
    pub payload_size: u64,
}

impl PieceCommitment {
    /// The piece CID (`baga6ea4sea...`).
    pub fn cid(&self) -> Cid {
        let hash = Multihash::<64>::wrap(SHA2_256_TRUNC254_PADDED, &self.commp)
            .expect("a 32-byte digest always fits a 64-byte multihash");
        Cid::new_v1(FIL_COMMITMENT_UNSEALED, hash)
    }
}

/// The padded piece size for a payload of `payload` bytes.
pub fn padded_piece_size(payload: u64) -> Option<u64> {
    let quads = payload.div_ceil(127);
    let padded = quads.checked_mul(128)?.max(MIN_PADDED_PIECE);
    padded.checked_next_power_of_two()
}

/// Computes the piece commitment of everything `reader` yields.
pub fn piece_cid<R: Read>(mut reader: R) -> Result<PieceCommitment, CommPError> {
    let mut commp = CommP::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => commp.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    commp.finish()
}

/// Streaming CommP calculator; also a [`Write`] sink.
#[derive(Debug, Clone)]
pub struct CommP {
    /// Pending 127-byte fr32 input quad.
    quad: [u8; 127],
    quad_len: usize,
    /// `levels[i]`: a left subtree root of 2^i leaves waiting for its sibling.
    levels: Vec<Option<[u8; 32]>>,
    /// Leaves (32-byte fr32 words) pushed so far.
    leaves: u64,
    payload: u64,
}

impl Default for CommP {
    fn default() -> Self {
        Self::new()
    }
}

impl CommP {
    /// An empty calculator.
    pub fn new() -> Self {
        CommP {
            quad: [0; 127],
            quad_len: 0,
            levels: Vec::new(),
            leaves: 0,
            payload: 0,
        }
    }

    /// Payload bytes consumed so far.
    pub fn payload_size(&self) -> u64 {
        self.payload
    }

    /// Feeds payload bytes.
    pub fn update(&mut self, mut data: &[u8]) {
        self.payload += data.len() as u64;
        if self.quad_len > 0 {
            let take = data.len().min(127 - self.quad_len);
            self.quad[self.quad_len..self.quad_len + take].copy_from_slice(&data[..take]);
            self.quad_len += take;
            data = &data[take..];
            if self.quad_len < 127 {
                return;
            }
            let quad = self.quad;
            self.push_quad(&quad);
            self.quad_len = 0;
        }
        let mut quads = data.chunks_exact(127);
        for quad in &mut quads {
            self.push_quad(quad);
        }
        let rest = quads.remainder();
        self.quad[..rest.len()].copy_from_slice(rest);
        self.quad_len = rest.len();
    }

    /// Pads, completes the tree and returns the commitment.
    pub fn finish(mut self) -> Result<PieceCommitment, CommPError> {
        if self.payload == 0 {
            return Err(CommPError::Empty);
        }
        let padded_size =
            padded_piece_size(self.payload).ok_or(CommPError::TooLarge(self.payload))?;
        if self.quad_len > 0 {
            self.quad[self.quad_len..].fill(0);
            let quad = self.quad;
            self.push_quad(&quad);
        }
        // Fill the rest of the tree with all-zero subtrees, largest first that fit.
        let target_leaves = padded_size / 32;
        let mut zero = ZeroSubtrees::new();
        while self.leaves < target_leaves {
            let level = self.leaves.trailing_zeros() as usize;
            let root = zero.root(level);
            self.push(level, root);
            self.leaves += 1 << level;
        }
        let top = target_leaves.trailing_zeros() as usize;
        let commp = self
            .levels
            .get(top)
            .copied()
            .flatten()
            .unwrap_or_else(|| zero.root(top));
        Ok(PieceCommitment {
            commp,
            padded_size,
            unpadded_size: padded_size / 128 * 127,
            payload_size: self.payload,
        })
    }

    /// fr32-pads one 127-byte quad into four leaves and adds them.
    fn push_quad(&mut self, quad: &[u8]) {
        let padded = fr32_pad(quad);
        let left = trunc254_pair(&padded[0..64]);
        let right = trunc254_pair(&padded[64..128]);
        self.push(1, left);
        self.push(1, right);
        self.leaves += 4;
    }

    /// Adds a subtree root at `level`, merging with pending left siblings.
    fn push(&mut self, mut level: usize, mut node: [u8; 32]) {
        loop {
            if self.levels.len() <= level {
                self.levels.resize(level + 1, None);
            }
            match self.levels[level].take() {
                Some(left) => {
                    node = trunc254_node(&left, &node);
                    level += 1;
                }
                None => {
                    self.levels[level] = Some(node);
                    return;
                }
            }
        }
    }
}

impl Write for CommP {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A writer that forwards to `inner` and computes the CommP of what passes.
#[derive(Debug)]
pub struct CommPWriter<W> {
    inner: W,
    commp: CommP,
}

impl<W: Write> CommPWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        CommPWriter {
            inner,
            commp: CommP::new(),
        }
    }

    /// Flushes and returns the writer and the commitment of everything written.
    pub fn finish(mut self) -> Result<(W, PieceCommitment), CommPError> {
        self.inner.flush()?;
        Ok((self.inner, self.commp.finish()?))
    }
}

impl<W: Write> Write for CommPWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.commp.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Roots of all-zero subtrees, computed as needed: level 0 is a zero leaf.
struct ZeroSubtrees(Vec<[u8; 32]>);

impl ZeroSubtrees {
    fn new() -> Self {
        ZeroSubtrees(vec![[0; 32]])
    }

    fn root(&mut self, level: usize) -> [u8; 32] {
        while self.0.len() <= level {
            let below = self.0[self.0.len() - 1];
            self.0.push(trunc254_node(&below, &below));
        }
        self.0[level]
    }
}

/// fr32: 127 bytes -> 128 bytes, two zero bits after every 254 bits.
fn fr32_pad(quad: &[u8]) -> [u8; 128] {
    let mut out = [0u8; 128];
    // Run 0: bits 0..254 unshifted.
    out[..32].copy_from_slice(&quad[..32]);
    out[31] &= 0x3f;
    // Run 1 starts at input bit 254 (byte 31, bit 6): shift by 6.
    for i in 32..64 {
        out[i] = (quad[i - 1] >> 6) | (quad[i] << 2);
    }
    out[63] &= 0x3f;
    // Run 2 starts at bit 508 (byte 63, bit 4): shift by 4.
    for i in 64..96 {
        out[i] = (quad[i - 1] >> 4) | (quad[i] << 4);
    }
    out[95] &= 0x3f;
    // Run 3 starts at bit 762 (byte 95, bit 2): shift by 2; it ends at bit 1016.
    for i in 96..127 {
        out[i] = (quad[i - 1] >> 2) | (quad[i] << 6);
    }
    out[127] = quad[126] >> 2;
    out
}

/// sha2-256-trunc254 of a 64-byte `left || right` pair.
fn trunc254_pair(pair: &[u8]) -> [u8; 32] {
    // A 64-byte message is one data block plus a fixed padding block:
    // 0x80, zeros, and the bit length 512 as a big-endian u64.
    let mut padding = [0u8; 64];
    padding[0] = 0x80;
    padding[62] = 0x02;
    let mut state = SHA256_IV;
    compress256(
        &mut state,
        &[
            *GenericArray::from_slice(pair),
            *GenericArray::from_slice(&padding),
        ],
    );
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out[31] &= 0x3f;
    out
}

fn trunc254_node(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut pair = [0u8; 64];
    pair[..32].copy_from_slice(left);
    pair[32..].copy_from_slice(right);
    trunc254_pair(&pair)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn node_hash_is_truncated_sha256() {
        let pair: Vec<u8> = (0..64).collect();
        let mut expected: [u8; 32] = Sha256::digest(&pair).into();
        expected[31] &= 0x3f;
        assert_eq!(trunc254_pair(&pair), expected);
    }

    #[test]
    fn fr32_moves_every_bit_and_inserts_two_zero_bits_per_254() {
        // Setting input bit k must set exactly output bit k + 2 * (k / 254).
        for k in (0..1016)
            .step_by(7)
            .chain([253, 254, 507, 508, 761, 762, 1015])
        {
            let mut quad = [0u8; 127];
            quad[k / 8] = 1 << (k % 8);
            let out = fr32_pad(&quad);
            let j = k + 2 * (k / 254);
            let ones: Vec<usize> = (0..1024)
                .filter(|&b| out[b / 8] >> (b % 8) & 1 == 1)
                .collect();
            assert_eq!(ones, vec![j], "input bit {k}");
        }
    }

    #[test]
    fn padded_sizes_follow_filecoin_rules() {
        let cases = [
            (1, 128),
            (127, 128),
            (128, 256),
            (254, 256),
            (255, 512),
            (1016, 1024),
            (1017, 2048),
        ];
        for (payload, padded) in cases {
            assert_eq!(
                padded_piece_size(payload),
                Some(padded),
                "payload {payload}"
            );
        }
        assert_eq!(padded_piece_size(u64::MAX), None);
    }

    #[test]
    fn split_writes_give_the_same_commitment() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        let whole = piece_cid(&data[..]).ok();
        let mut parts = CommP::new();
        for chunk in data.chunks(100) {
            parts.update(chunk);
        }
        assert_eq!(parts.finish().ok(), whole);
    }

    #[test]
    fn zero_subtrees_match_go_fil_commcid_empty_pieces() {
        // go-fil-commcid commcid_test.go "empty32GiB" and "empty64GiB": the
        // CommP of all-zero 32 GiB and 64 GiB pieces (2^30 and 2^31 leaves).
        let mut zero = ZeroSubtrees::new();
        for (level, padded, expected) in [
            (
                30,
                32u64 << 30,
                "baga6ea4seaqao7s73y24kcutaosvacpdjgfe5pw76ooefnyqw4ynr3d2y6x2mpq",
            ),
            (
                31,
                64u64 << 30,
                "baga6ea4seaqomqafu276g53zko4k23xzh4h4uecjwicbmvhsuqi7o4bhthhm4aq",
            ),
        ] {
            let piece = PieceCommitment {
                commp: zero.root(level),
                padded_size: padded,
                unpadded_size: 0,
                payload_size: 0,
            };
            assert_eq!(piece.cid().to_string(), expected);
        }
    }

    #[test]
    fn empty_payload_is_an_error() {
        assert!(matches!(CommP::new().finish(), Err(CommPError::Empty)));
    }
}
