//! CARv1: a streaming writer and a verifying streaming reader.
//!
//! A CARv1 is `varint(len) header` then `varint(len) cid block` frames. The
//! header is DAG-CBOR `{"roots": [CID...], "version": 1}` (map keys in
//! DAG-CBOR order: shorter first), CIDs as tag 42 over `0x00 || cid bytes`.
//!
//! The reader trusts nothing: every length is bounded before anything is
//! allocated ([`MAX_HEADER_SIZE`], [`MAX_BLOCK_SIZE`]), every block's bytes
//! are hashed and compared with its CID, and truncated or forged input ends
//! in a [`CarError`] naming the block (its index and CID), never a panic.

use std::collections::HashSet;
use std::io::{self, BufReader, Read, Write};

use cbor4ii::core::Value;
use cbor4ii::core::dec::Decode;
use cbor4ii::core::enc::Encode;
use cbor4ii::core::utils::{BufWriter, SliceReader};

use super::{BlockSink, Cid, cid_matches};

/// Largest header we read (the roots list), in bytes.
pub const MAX_HEADER_SIZE: u64 = 1 << 20;
/// Largest block we read, in bytes (kubo's blocks are at most 1 MiB + framing).
pub const MAX_BLOCK_SIZE: u64 = 4 << 20;
/// Longest CID we accept in a frame.
const MAX_CID_SIZE: u64 = 128;
/// DAG-CBOR tag for CIDs.
const CID_TAG: u64 = 42;

/// What is wrong with a CAR.
#[derive(Debug, thiserror::Error)]
pub enum CarError {
    /// Reading or writing failed.
    #[error("CAR I/O error: {0}")]
    Io(#[from] io::Error),
    /// The header is not a CARv1 header.
    #[error("bad CAR header: {0}")]
    BadHeader(String),
    /// The input ends inside a frame.
    #[error("CAR truncated in {what}")]
    Truncated {
        /// "the header" or "block #N".
        what: String,
    },
    /// A frame length over our bound.
    #[error("{what} is {len} bytes, over the {max}-byte limit")]
    TooLarge {
        /// "the header" or "block #N".
        what: String,
        /// The declared length.
        len: u64,
        /// The bound.
        max: u64,
    },
    /// A frame that does not start with a valid CID.
    #[error("block #{index}: invalid CID: {reason}")]
    BadCid {
        /// 0-based position of the block in the CAR.
        index: u64,
        /// The parse error.
        reason: String,
    },
    /// A block whose bytes do not hash to its CID.
    #[error("block #{index} ({cid}): content does not match its CID")]
    HashMismatch {
        /// 0-based position of the block in the CAR.
        index: u64,
        /// The CID the frame claims.
        cid: Cid,
    },
    /// A CID whose hash function we cannot check.
    #[error(
        "block #{index} ({cid}): unsupported hash function 0x{code:x}; only sha2-256 and identity are checked"
    )]
    UnsupportedHash {
        /// 0-based position of the block in the CAR.
        index: u64,
        /// The CID.
        cid: Cid,
        /// Its multihash code.
        code: u64,
    },
}

/// Writes a CARv1: the header at construction, then each block once.
pub struct CarWriter<W: Write> {
    out: W,
    seen: HashSet<Cid>,
    bytes_written: u64,
}

impl<W: Write> CarWriter<W> {
    /// Writes the header naming `roots` and returns the writer.
    pub fn new(mut out: W, roots: &[Cid]) -> Result<Self, CarError> {
        let header = encode_header(roots);
        let len = write_varint(&mut out, header.len() as u64)?;
        out.write_all(&header)?;
        Ok(CarWriter {
            out,
            seen: HashSet::new(),
            bytes_written: (len + header.len()) as u64,
        })
    }

    /// Appends a block unless one with this CID was written already; returns
    /// whether it was written. The caller vouches that `data` hashes to `cid`.
    pub fn put(&mut self, cid: &Cid, data: &[u8]) -> io::Result<bool> {
        if self.seen.contains(cid) {
            return Ok(false);
        }
        let cid_bytes = cid.to_bytes();
        let len = write_varint(&mut self.out, (cid_bytes.len() + data.len()) as u64)?;
        self.out.write_all(&cid_bytes)?;
        self.out.write_all(data)?;
        self.bytes_written += (len + cid_bytes.len() + data.len()) as u64;
        self.seen.insert(*cid);
        Ok(true)
    }

    /// Whether a block with this CID was written already.
    pub fn contains(&self, cid: &Cid) -> bool {
        self.seen.contains(cid)
    }

    /// Bytes written so far (header included).
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    /// Flushes and returns the underlying writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> BlockSink for CarWriter<W> {
    fn put(&mut self, cid: &Cid, data: &[u8]) -> io::Result<()> {
        CarWriter::put(self, cid, data).map(|_| ())
    }
}

fn write_varint(out: &mut impl Write, n: u64) -> io::Result<usize> {
    let mut buf = unsigned_varint::encode::u64_buffer();
    let bytes = unsigned_varint::encode::u64(n, &mut buf);
    out.write_all(bytes)?;
    Ok(bytes.len())
}

/// The DAG-CBOR header `{"roots": [...], "version": 1}`.
fn encode_header(roots: &[Cid]) -> Vec<u8> {
    let roots = roots
        .iter()
        .map(|cid| {
            let mut bytes = vec![0u8]; // DAG-CBOR's multibase-identity prefix
            bytes.extend_from_slice(&cid.to_bytes());
            Value::Tag(CID_TAG, Box::new(Value::Bytes(bytes)))
        })
        .collect();
    let header = Value::Map(vec![
        (Value::Text("roots".into()), Value::Array(roots)),
        (Value::Text("version".into()), Value::Integer(1)),
    ]);
    let mut writer = BufWriter::new(Vec::new());
    header
        .encode(&mut writer)
        .expect("encoding CBOR into a Vec cannot fail");
    writer.into_inner()
}

fn decode_header(bytes: &[u8]) -> Result<Vec<Cid>, CarError> {
    let bad = |reason: &str| CarError::BadHeader(reason.to_string());
    let mut reader = SliceReader::new(bytes);
    let value = Value::decode(&mut reader)
        .map_err(|e| CarError::BadHeader(format!("not DAG-CBOR: {e:?}")))?;
    let Value::Map(entries) = value else {
        return Err(bad("not a map"));
    };
    let mut roots = None;
    let mut version = None;
    for (key, value) in entries {
        match (key, value) {
            (Value::Text(k), Value::Integer(v)) if k == "version" => version = Some(v),
            (Value::Text(k), Value::Array(items)) if k == "roots" => {
                let cids = items.into_iter().map(|item| match item {
                    Value::Tag(CID_TAG, inner) => match *inner {
                        Value::Bytes(b) if b.first() == Some(&0) => Cid::try_from(&b[1..])
                            .map_err(|e| CarError::BadHeader(format!("bad root CID: {e}"))),
                        _ => Err(bad("root is not a CID")),
                    },
                    _ => Err(bad("root is not a CID")),
                });
                roots = Some(cids.collect::<Result<Vec<_>, _>>()?);
            }
            _ => return Err(bad("unexpected field")),
        }
    }
    match version {
        Some(1) => roots.ok_or_else(|| bad("missing roots")),
        Some(2) => Err(bad("this is a CARv2; only CARv1 is supported")),
        Some(v) => Err(CarError::BadHeader(format!("unsupported version {v}"))),
        None => Err(bad("missing version")),
    }
}

/// Reads a CARv1, checking every block against its CID.
pub struct CarReader<R: Read> {
    input: BufReader<R>,
    roots: Vec<Cid>,
    index: u64,
    position: u64,
    frame: Vec<u8>,
    block_start: usize,
}

impl<R: Read> CarReader<R> {
    /// Reads and checks the header. The input is buffered internally.
    pub fn new(input: R) -> Result<Self, CarError> {
        let mut input = BufReader::with_capacity(64 * 1024, input);
        let what = || "the header".to_string();
        let (len, varint_len) =
            read_varint(&mut input)?.ok_or_else(|| CarError::Truncated { what: what() })?;
        if len > MAX_HEADER_SIZE {
            return Err(CarError::TooLarge {
                what: what(),
                len,
                max: MAX_HEADER_SIZE,
            });
        }
        let mut header = vec![0; len as usize];
        read_exact_or_truncated(&mut input, &mut header, what)?;
        let roots = decode_header(&header)?;
        Ok(CarReader {
            input,
            roots,
            index: 0,
            position: varint_len as u64 + len,
            frame: Vec::new(),
            block_start: 0,
        })
    }

    /// The roots the header names.
    pub fn roots(&self) -> &[Cid] {
        &self.roots
    }

    /// Offset in the input just past the last frame read.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The next block, verified; `None` at a clean end of input. The data
    /// borrows the reader's buffer until the next call.
    pub fn next_block(&mut self) -> Result<Option<(Cid, &[u8])>, CarError> {
        let index = self.index;
        let what = || format!("block #{index}");
        let Some((len, varint_len)) = read_varint(&mut self.input)? else {
            return Ok(None);
        };
        if len > MAX_BLOCK_SIZE + MAX_CID_SIZE {
            return Err(CarError::TooLarge {
                what: what(),
                len,
                max: MAX_BLOCK_SIZE + MAX_CID_SIZE,
            });
        }
        self.frame.resize(len as usize, 0);
        read_exact_or_truncated(&mut self.input, &mut self.frame, what)?;
        let mut cursor = io::Cursor::new(&self.frame[..]);
        let cid = Cid::read_bytes(&mut cursor).map_err(|e| CarError::BadCid {
            index,
            reason: e.to_string(),
        })?;
        let block_start = cursor.position() as usize;
        let data = &self.frame[block_start..];
        match cid_matches(&cid, data) {
            Some(true) => {}
            Some(false) => return Err(CarError::HashMismatch { index, cid }),
            None => {
                return Err(CarError::UnsupportedHash {
                    index,
                    cid,
                    code: cid.hash().code(),
                });
            }
        }
        self.index += 1;
        self.position += varint_len as u64 + len;
        self.block_start = block_start;
        Ok(Some((cid, &self.frame[block_start..])))
    }

    /// Offset in the input of the last returned block's data, and its length.
    pub fn last_block_span(&self) -> (u64, usize) {
        let data_len = self.frame.len() - self.block_start;
        (self.position - data_len as u64, data_len)
    }

    /// Number of blocks read so far.
    pub fn blocks_read(&self) -> u64 {
        self.index
    }
}

/// Reads a frame-length varint; `None` on a clean EOF before its first byte.
fn read_varint(input: &mut impl Read) -> Result<Option<(u64, usize)>, CarError> {
    let mut buf = [0u8; 10];
    let mut n = 0;
    loop {
        let mut byte = [0u8; 1];
        match input.read(&mut byte) {
            Ok(0) if n == 0 => return Ok(None),
            Ok(0) => {
                return Err(CarError::Truncated {
                    what: "a frame length".into(),
                });
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
        buf[n] = byte[0];
        n += 1;
        if byte[0] & 0x80 == 0 {
            break;
        }
        if n == buf.len() {
            return Err(CarError::BadHeader(
                "frame length varint is too long".into(),
            ));
        }
    }
    let (value, _) = unsigned_varint::decode::u64(&buf[..n])
        .map_err(|e| CarError::BadHeader(format!("invalid frame length: {e}")))?;
    Ok(Some((value, n)))
}

fn read_exact_or_truncated(
    input: &mut impl Read,
    buf: &mut [u8],
    what: impl Fn() -> String,
) -> Result<(), CarError> {
    input.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => CarError::Truncated { what: what() },
        _ => CarError::Io(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::{RAW, block_cid};

    fn car_with(blocks: &[&[u8]]) -> (Vec<u8>, Vec<Cid>) {
        let cids: Vec<Cid> = blocks
            .iter()
            .map(|b| block_cid(cid::Version::V1, RAW, b))
            .collect();
        let mut writer = CarWriter::new(Vec::new(), &cids[..1]).ok();
        for (cid, block) in cids.iter().zip(blocks) {
            writer.as_mut().map(|w| w.put(cid, block));
        }
        (
            writer.and_then(|w| w.finish().ok()).unwrap_or_default(),
            cids,
        )
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<(Cid, Vec<u8>)>, CarError> {
        let mut reader = CarReader::new(bytes)?;
        let mut out = Vec::new();
        while let Some((cid, data)) = reader.next_block()? {
            out.push((cid, data.to_vec()));
        }
        Ok(out)
    }

    #[test]
    fn header_is_canonical_dag_cbor() {
        let cid = block_cid(cid::Version::V1, RAW, b"");
        let header = encode_header(&[cid]);
        // a2 "roots" [tag42(bytes(0x00 || cid))] "version" 1
        assert_eq!(&header[..7], &[0xa2, 0x65, b'r', b'o', b'o', b't', b's']);
        assert_eq!(
            &header[header.len() - 9..],
            &[0x67, b'v', b'e', b'r', b's', b'i', b'o', b'n', 0x01]
        );
        assert_eq!(decode_header(&header).ok(), Some(vec![cid]));
    }

    #[test]
    fn blocks_round_trip_once_each_in_order() {
        let (bytes, cids) = car_with(&[b"one", b"two", b"one"]);
        let blocks = read_all(&bytes).ok().unwrap_or_default();
        assert_eq!(blocks.iter().map(|b| b.0).collect::<Vec<_>>(), cids[..2]);
        assert_eq!(blocks[1].1, b"two");
    }

    #[test]
    fn flipped_byte_names_the_block() {
        let (mut bytes, cids) = car_with(&[b"alpha", b"beta"]);
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        match read_all(&bytes) {
            Err(CarError::HashMismatch { index, cid }) => assert_eq!((index, cid), (1, cids[1])),
            other => panic!("expected a hash mismatch, got {other:?}"),
        }
    }

    #[test]
    fn truncation_anywhere_is_an_error() {
        let (bytes, _) = car_with(&[b"alpha", b"beta"]);
        // Frames are varint(1 byte) + raw CIDv1 (36 bytes) + data.
        let second_frame = bytes.len() - (1 + 36 + 4);
        let first_frame = second_frame - (1 + 36 + 5);
        for cut in 0..bytes.len() {
            let result = read_all(&bytes[..cut]);
            // Cutting exactly between frames is a valid, shorter CAR.
            if cut == first_frame || cut == second_frame {
                assert!(result.is_ok(), "cut at {cut}");
            } else {
                assert!(result.is_err(), "cut at {cut} should fail");
            }
        }
    }

    #[test]
    fn oversized_lengths_are_refused_before_allocating() {
        let huge_header = [0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(matches!(
            CarReader::new(&huge_header[..]),
            Err(CarError::TooLarge { .. })
        ));
        let (mut bytes, _) = car_with(&[b"x"]);
        bytes.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(matches!(read_all(&bytes), Err(CarError::TooLarge { .. })));
    }
}
