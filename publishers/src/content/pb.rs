//! dag-pb (`PBNode`, `PBLink`) and UnixFS (`Data`) protobuf messages.
//!
//! Hand-written quick-protobuf messages, because the wire layout is part of
//! the CID: dag-pb's canonical form writes `Links` (field 2) before `Data`
//! (field 1), and a link's fields in the order Hash(1), Name(2), Tsize(3).
//! Decoding is strict (fields in canonical order, each at most once, no
//! unknown fields) and bounded by the input slice: a forged block yields a
//! [`PbError`], never a panic or an allocation larger than the block.

use quick_protobuf::sizeofs::{sizeof_len, sizeof_varint};
use quick_protobuf::{BytesReader, MessageRead, MessageWrite, Writer, WriterBackend};

/// A dag-pb or UnixFS message that could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PbError {
    /// The bytes are not valid protobuf.
    #[error("malformed protobuf: {0}")]
    Protobuf(String),
    /// The protobuf is valid but breaks a dag-pb or UnixFS rule.
    #[error("invalid {message}: {reason}")]
    Invalid {
        /// The message type ("PBNode", "UnixFS Data", ...).
        message: &'static str,
        /// The rule it breaks.
        reason: &'static str,
    },
}

impl From<quick_protobuf::Error> for PbError {
    fn from(e: quick_protobuf::Error) -> Self {
        PbError::Protobuf(e.to_string())
    }
}

fn invalid(message: &'static str, reason: &'static str) -> quick_protobuf::Error {
    quick_protobuf::Error::Message(format!("invalid {message}: {reason}"))
}

/// A dag-pb link: the child's CID bytes, its name and cumulative size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PbLink<'a> {
    /// Binary CID of the child.
    pub hash: &'a [u8],
    /// Entry name (directories) or empty (file chunks).
    pub name: Option<&'a str>,
    /// Serialized size of the child's whole subtree.
    pub tsize: Option<u64>,
}

/// A dag-pb node: links to children and an opaque payload (UnixFS `Data`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PbNode<'a> {
    /// Children, in the order they were written.
    pub links: Vec<PbLink<'a>>,
    /// The payload; for UnixFS an encoded [`UnixFsData`].
    pub data: Option<&'a [u8]>,
}

impl<'a> PbNode<'a> {
    /// Decodes a dag-pb block.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, PbError> {
        let mut reader = BytesReader::from_bytes(bytes);
        Ok(Self::from_reader(&mut reader, bytes)?)
    }
}

impl<'a> MessageRead<'a> for PbLink<'a> {
    fn from_reader(r: &mut BytesReader, bytes: &'a [u8]) -> quick_protobuf::Result<Self> {
        let mut link = PbLink {
            hash: &[],
            name: None,
            tsize: None,
        };
        let mut last_field = 0;
        let mut seen_hash = false;
        while !r.is_eof() {
            let tag = r.next_tag(bytes)?;
            let field = tag >> 3;
            if field <= last_field {
                return Err(invalid("PBLink", "fields out of order or repeated"));
            }
            last_field = field;
            match tag {
                10 => {
                    link.hash = r.read_bytes(bytes)?;
                    seen_hash = true;
                }
                18 => link.name = Some(r.read_string(bytes)?),
                24 => link.tsize = Some(r.read_uint64(bytes)?),
                _ => return Err(invalid("PBLink", "unknown field")),
            }
        }
        if !seen_hash {
            return Err(invalid("PBLink", "missing Hash"));
        }
        Ok(link)
    }
}

impl<'a> MessageRead<'a> for PbNode<'a> {
    fn from_reader(r: &mut BytesReader, bytes: &'a [u8]) -> quick_protobuf::Result<Self> {
        let mut node = PbNode::default();
        while !r.is_eof() {
            match r.next_tag(bytes)? {
                18 if node.data.is_none() => {
                    let link_bytes = r.read_bytes(bytes)?;
                    let mut link_reader = BytesReader::from_bytes(link_bytes);
                    node.links
                        .push(PbLink::from_reader(&mut link_reader, link_bytes)?);
                }
                18 => return Err(invalid("PBNode", "Links after Data")),
                10 if node.data.is_none() => node.data = Some(r.read_bytes(bytes)?),
                10 => return Err(invalid("PBNode", "repeated Data")),
                _ => return Err(invalid("PBNode", "unknown field")),
            }
        }
        Ok(node)
    }
}

impl MessageWrite for PbLink<'_> {
    fn get_size(&self) -> usize {
        1 + sizeof_len(self.hash.len())
            + self.name.map_or(0, |n| 1 + sizeof_len(n.len()))
            + self.tsize.map_or(0, |t| 1 + sizeof_varint(t))
    }

    fn write_message<W: WriterBackend>(&self, w: &mut Writer<W>) -> quick_protobuf::Result<()> {
        w.write_with_tag(10, |w| w.write_bytes(self.hash))?;
        if let Some(name) = self.name {
            w.write_with_tag(18, |w| w.write_string(name))?;
        }
        if let Some(tsize) = self.tsize {
            w.write_with_tag(24, |w| w.write_uint64(tsize))?;
        }
        Ok(())
    }
}

impl MessageWrite for PbNode<'_> {
    fn get_size(&self) -> usize {
        let links: usize = self
            .links
            .iter()
            .map(|l| 1 + sizeof_len(l.get_size()))
            .sum();
        links + self.data.map_or(0, |d| 1 + sizeof_len(d.len()))
    }

    fn write_message<W: WriterBackend>(&self, w: &mut Writer<W>) -> quick_protobuf::Result<()> {
        // Canonical dag-pb: Links (field 2) come before Data (field 1).
        for link in &self.links {
            w.write_with_tag(18, |w| w.write_message(link))?;
        }
        if let Some(data) = self.data {
            w.write_with_tag(10, |w| w.write_bytes(data))?;
        }
        Ok(())
    }
}

/// UnixFS node kinds (`Data.DataType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    /// Legacy file data leaf.
    Raw = 0,
    /// A directory; its links are the entries.
    Directory = 1,
    /// A file or a file chunk.
    File = 2,
    /// Unused metadata node.
    Metadata = 3,
    /// A symbolic link; `Data` is the target.
    Symlink = 4,
    /// A HAMT-sharded directory.
    HamtShard = 5,
}

impl DataType {
    fn from_i32(v: i32) -> Option<Self> {
        Some(match v {
            0 => DataType::Raw,
            1 => DataType::Directory,
            2 => DataType::File,
            3 => DataType::Metadata,
            4 => DataType::Symlink,
            5 => DataType::HamtShard,
            _ => return None,
        })
    }
}

/// The UnixFS `Data` message carried in a dag-pb node's `Data` field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnixFsData<'a> {
    /// What the node is.
    pub kind: DataType,
    /// File bytes held by this node itself (leaves), or a symlink target.
    pub data: Option<&'a [u8]>,
    /// Total file bytes under this node.
    pub filesize: Option<u64>,
    /// File bytes under each link, in link order.
    pub blocksizes: Vec<u64>,
    /// HAMT hash function.
    pub hash_type: Option<u64>,
    /// HAMT fan-out.
    pub fanout: Option<u64>,
    /// Unix permission bits.
    pub mode: Option<u32>,
    /// Encoded `UnixTime` message, kept opaque.
    pub mtime: Option<&'a [u8]>,
}

impl<'a> UnixFsData<'a> {
    /// A node of `kind` with every optional field unset.
    pub fn new(kind: DataType) -> Self {
        UnixFsData {
            kind,
            data: None,
            filesize: None,
            blocksizes: Vec::new(),
            hash_type: None,
            fanout: None,
            mode: None,
            mtime: None,
        }
    }

    /// Decodes the payload of a UnixFS dag-pb node.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, PbError> {
        let mut reader = BytesReader::from_bytes(bytes);
        Ok(Self::from_reader(&mut reader, bytes)?)
    }
}

impl<'a> MessageRead<'a> for UnixFsData<'a> {
    fn from_reader(r: &mut BytesReader, bytes: &'a [u8]) -> quick_protobuf::Result<Self> {
        let mut kind = None;
        let mut msg = UnixFsData::new(DataType::Raw);
        while !r.is_eof() {
            match r.next_tag(bytes)? {
                8 => {
                    let v = r.read_int32(bytes)?;
                    kind = Some(
                        DataType::from_i32(v)
                            .ok_or_else(|| invalid("UnixFS Data", "unknown Type"))?,
                    );
                }
                18 => msg.data = Some(r.read_bytes(bytes)?),
                24 => msg.filesize = Some(r.read_uint64(bytes)?),
                32 => msg.blocksizes.push(r.read_uint64(bytes)?),
                // Packed encoding of blocksizes, which some writers use.
                34 => {
                    let packed = r.read_bytes(bytes)?;
                    let mut inner = BytesReader::from_bytes(packed);
                    while !inner.is_eof() {
                        msg.blocksizes.push(inner.read_uint64(packed)?);
                    }
                }
                40 => msg.hash_type = Some(r.read_uint64(bytes)?),
                48 => msg.fanout = Some(r.read_uint64(bytes)?),
                56 => msg.mode = Some(r.read_uint32(bytes)?),
                66 => msg.mtime = Some(r.read_bytes(bytes)?),
                _ => return Err(invalid("UnixFS Data", "unknown field")),
            }
        }
        msg.kind = kind.ok_or_else(|| invalid("UnixFS Data", "missing Type"))?;
        Ok(msg)
    }
}

impl MessageWrite for UnixFsData<'_> {
    fn get_size(&self) -> usize {
        1 + sizeof_varint(self.kind as u64)
            + self.data.map_or(0, |d| 1 + sizeof_len(d.len()))
            + self.filesize.map_or(0, |s| 1 + sizeof_varint(s))
            + self
                .blocksizes
                .iter()
                .map(|&b| 1 + sizeof_varint(b))
                .sum::<usize>()
            + self.hash_type.map_or(0, |h| 1 + sizeof_varint(h))
            + self.fanout.map_or(0, |f| 1 + sizeof_varint(f))
            + self.mode.map_or(0, |m| 1 + sizeof_varint(u64::from(m)))
            + self.mtime.map_or(0, |m| 1 + sizeof_len(m.len()))
    }

    fn write_message<W: WriterBackend>(&self, w: &mut Writer<W>) -> quick_protobuf::Result<()> {
        w.write_with_tag(8, |w| w.write_enum(self.kind as i32))?;
        if let Some(data) = self.data {
            w.write_with_tag(18, |w| w.write_bytes(data))?;
        }
        if let Some(size) = self.filesize {
            w.write_with_tag(24, |w| w.write_uint64(size))?;
        }
        // proto2 `repeated uint64 blocksizes = 4;` is not packed: one tag per value.
        for &size in &self.blocksizes {
            w.write_with_tag(32, |w| w.write_uint64(size))?;
        }
        if let Some(h) = self.hash_type {
            w.write_with_tag(40, |w| w.write_uint64(h))?;
        }
        if let Some(f) = self.fanout {
            w.write_with_tag(48, |w| w.write_uint64(f))?;
        }
        if let Some(m) = self.mode {
            w.write_with_tag(56, |w| w.write_uint32(m))?;
        }
        if let Some(m) = self.mtime {
            w.write_with_tag(66, |w| w.write_bytes(m))?;
        }
        Ok(())
    }
}

/// Serializes a message (without a length prefix).
pub fn encode<M: MessageWrite>(message: &M) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.get_size());
    // The trait method writes the fields only; `Writer::write_message` would
    // add a length prefix.
    MessageWrite::write_message(message, &mut Writer::new(&mut out))
        .expect("writing protobuf into a Vec cannot fail");
    out
}

/// The bytes around `n` data bytes in a dag-pb UnixFS file leaf, as kubo
/// writes it: `PBNode{Data: Data{Type: File, Data: <n bytes>, filesize: n}}`.
///
/// Lets the importer build a leaf around a chunk already in its buffer
/// instead of copying the chunk twice through nested messages.
pub(crate) fn file_leaf_frame(n: usize) -> (Vec<u8>, Vec<u8>) {
    let n64 = n as u64;
    let data_field = if n == 0 { 0 } else { 1 + sizeof_len(n) };
    let unixfs_len = 1 + sizeof_varint(DataType::File as u64) + data_field + 1 + sizeof_varint(n64);
    let mut prefix = Vec::with_capacity(24);
    let mut suffix = Vec::with_capacity(12);
    {
        let mut w = Writer::new(&mut prefix);
        let result = (|| {
            w.write_tag(10)?;
            w.write_varint(unixfs_len as u64)?;
            w.write_with_tag(8, |w| w.write_enum(DataType::File as i32))?;
            if n > 0 {
                w.write_tag(18)?;
                w.write_varint(n64)?;
            }
            Ok::<(), quick_protobuf::Error>(())
        })();
        result.expect("writing protobuf into a Vec cannot fail");
    }
    Writer::new(&mut suffix)
        .write_with_tag(24, |w| w.write_uint64(n64))
        .expect("writing protobuf into a Vec cannot fail");
    (prefix, suffix)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf_via_messages(chunk: &[u8]) -> Vec<u8> {
        let mut unixfs = UnixFsData::new(DataType::File);
        unixfs.data = (!chunk.is_empty()).then_some(chunk);
        unixfs.filesize = Some(chunk.len() as u64);
        let inner = encode(&unixfs);
        encode(&PbNode {
            links: vec![],
            data: Some(&inner),
        })
    }

    #[test]
    fn leaf_frame_matches_nested_message_encoding() {
        for n in [0usize, 1, 127, 128, 16_383, 16_384, 262_144, 1 << 20] {
            let chunk = vec![7u8; n];
            let (prefix, suffix) = file_leaf_frame(n);
            let framed = [prefix.as_slice(), &chunk, &suffix].concat();
            assert_eq!(framed, leaf_via_messages(&chunk), "n = {n}");
        }
    }

    #[test]
    fn empty_file_leaf_is_kubos_six_bytes() {
        // Type=File, filesize=0 and no Data field: QmbFMke1... in kubo.
        assert_eq!(leaf_via_messages(b""), [0x0a, 0x04, 0x08, 0x02, 0x18, 0x00]);
    }

    #[test]
    fn links_are_written_before_data_and_decode_back() {
        let hash = [0x12u8, 0x20, 1, 2, 3];
        let node = PbNode {
            links: vec![PbLink {
                hash: &hash,
                name: Some("a"),
                tsize: Some(9),
            }],
            data: Some(&[0x08, 0x01]),
        };
        let bytes = encode(&node);
        assert_eq!(bytes[0], 0x12, "first field is Links");
        assert_eq!(bytes.len(), node.get_size());
        assert_eq!(PbNode::decode(&bytes), Ok(node));
    }

    #[test]
    fn unixfs_round_trips_with_unpacked_blocksizes() {
        let mut data = UnixFsData::new(DataType::File);
        data.filesize = Some(300);
        data.blocksizes = vec![200, 100];
        let bytes = encode(&data);
        assert_eq!(
            bytes,
            [0x08, 0x02, 0x18, 0xac, 0x02, 0x20, 0xc8, 0x01, 0x20, 0x64]
        );
        assert_eq!(UnixFsData::decode(&bytes), Ok(data));
    }

    #[test]
    fn strict_decoding_rejects_non_canonical_nodes() {
        // Data before Links.
        assert!(PbNode::decode(&[0x0a, 0x00, 0x12, 0x02, 0x0a, 0x00]).is_err());
        // Unknown field 3.
        assert!(PbNode::decode(&[0x18, 0x01]).is_err());
        // Link without Hash.
        assert!(PbNode::decode(&[0x12, 0x02, 0x18, 0x01]).is_err());
        // Length running past the end.
        assert!(PbNode::decode(&[0x0a, 0x05, 0x00]).is_err());
        // UnixFS without Type, and with an unknown Type.
        assert!(UnixFsData::decode(&[0x18, 0x01]).is_err());
        assert!(UnixFsData::decode(&[0x08, 0x09]).is_err());
    }
}
