//! Fuzz-style property tests: arbitrary or mutated bytes fed to the CAR
//! reader, the exporter and the dag-pb decoder end in `Ok` or `Err`, never
//! a panic. Memory stays bounded because every length is checked against
//! `MAX_HEADER_SIZE` / `MAX_BLOCK_SIZE` before anything is allocated (an
//! input claiming a 4 GiB frame is an error, see the last test).

mod common;

use std::io::{Cursor, Read};
use std::sync::OnceLock;

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use shoal_publishers::content::car::{CarError, CarReader};
use shoal_publishers::content::pb::{PbLink, PbNode, UnixFsData, encode};
use shoal_publishers::content::{
    Cid, NullSink, Profile, export_car, import_reader, verify_car, write_car,
};

/// Reads every block; the error, if any, is the only outcome that matters.
fn read_all(bytes: &[u8]) -> Result<u64, CarError> {
    let mut reader = CarReader::new(bytes)?;
    while reader.next_block()?.is_some() {}
    Ok(reader.blocks_read())
}

/// A valid CAR of the reference tree (built once) and its root.
fn sample_car() -> &'static (Cid, Vec<u8>) {
    static CAR: OnceLock<(Cid, Vec<u8>)> = OnceLock::new();
    CAR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir for the sample CAR");
        common::write_tree(
            dir.path(),
            &[
                ("a", b"alpha\n"),
                ("sub/b", &common::xorshift(3000)),
                ("empty", b""),
            ],
            &["nothing"],
        )
        .expect("sample tree");
        let (packed, bytes) =
            write_car(dir.path(), Profile::V0Default, Vec::new()).expect("sample CAR");
        (packed.root, bytes)
    })
}

/// Hands out its data in pieces of the given sizes, like a slow socket.
struct Trickle<'a> {
    data: &'a [u8],
    sizes: Vec<usize>,
    turn: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let size = self
            .sizes
            .get(self.turn % self.sizes.len().max(1))
            .copied()
            .unwrap_or(1)
            .max(1);
        self.turn += 1;
        let n = size.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn car_reader_survives_arbitrary_bytes(bytes in vec(any::<u8>(), 0..2048)) {
        let _ = read_all(&bytes);
    }

    #[test]
    fn car_reader_and_exporter_survive_mutated_cars(
        mutations in vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let (root, car) = sample_car();
        let mut forged = car.clone();
        for (at, value) in &mutations {
            forged[at.index(car.len())] = *value;
        }
        forged.truncate(cut.index(car.len() + 1));
        let _ = read_all(&forged);
        let _ = verify_car(&forged[..], root);
        let out = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let result = export_car(Cursor::new(&forged), root, &out.path().join("x"));
        // An export only succeeds when every block in the CAR checked out.
        if result.is_ok() {
            prop_assert!(read_all(&forged).is_ok());
        }
    }

    #[test]
    fn dag_pb_and_unixfs_decoders_survive_arbitrary_bytes(bytes in vec(any::<u8>(), 0..1024)) {
        let _ = PbNode::decode(&bytes);
        let _ = UnixFsData::decode(&bytes);
    }

    #[test]
    fn dag_pb_nodes_round_trip(
        links in vec((vec(any::<u8>(), 0..40), option::of("[a-z.]{0,8}"), option::of(any::<u64>())), 0..6),
        data in option::of(vec(any::<u8>(), 0..64)),
    ) {
        let node = PbNode {
            links: links.iter().map(|(h, n, t)| PbLink { hash: h, name: n.as_deref(), tsize: *t }).collect(),
            data: data.as_deref(),
        };
        let bytes = encode(&node);
        prop_assert_eq!(PbNode::decode(&bytes), Ok(node));
    }

    #[test]
    fn cid_does_not_depend_on_how_reads_are_split(
        len in 0usize..20_000,
        sizes in vec(1usize..5000, 1..8),
    ) {
        let data = common::xorshift(len);
        let options = shoal_publishers::content::ImportOptions { chunk_size: 1024, max_links: 3, ..Profile::V0Default.options() };
        let whole = import_reader(&data[..], options, &mut NullSink).map(|i| i.cid).ok();
        let split = import_reader(Trickle { data: &data, sizes, turn: 0 }, options, &mut NullSink).map(|i| i.cid).ok();
        prop_assert_eq!(whole, split);
    }
}

#[test]
fn a_frame_claiming_gigabytes_is_refused_without_allocating() {
    let (_, car) = sample_car();
    let mut forged = car.clone();
    forged.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x10]); // 4 GiB
    assert!(matches!(
        read_all(&forged),
        Err(CarError::TooLarge {
            len: 4_294_967_296,
            ..
        })
    ));
}
