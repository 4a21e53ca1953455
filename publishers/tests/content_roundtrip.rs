//! Round trips (path -> CAR -> verified read -> export -> same bytes, same
//! CID) and tampering: a flipped byte in a CAR or in a file is detected and
//! named.

mod common;

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::Cursor;
use std::path::Path;

use cid::Version;
use common::{K, reference_tree, snapshot, xorshift};
use shoal_publishers::content::car::{CarError, CarReader, CarWriter};
use shoal_publishers::content::pb::{DataType, PbLink, PbNode, UnixFsData, encode};
use shoal_publishers::content::verify::diff_path_against_car;
use shoal_publishers::content::{
    Cid, DAG_PB, ExportError, Profile, VerifyError, block_cid, export_car, import_path, verify_car,
    verify_path, write_car,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn car_of(path: &Path, profile: Profile) -> Result<(Cid, Vec<u8>), Box<dyn std::error::Error>> {
    let (packed, bytes) = write_car(path, profile, Vec::new())?;
    Ok((packed.root, bytes))
}

/// A block as listed in a CAR: CID, data, and (offset, length) of the data.
type Listed = (Cid, Vec<u8>, (u64, usize));

/// Every block of a CAR, in order, with its data span.
fn blocks(car: &[u8]) -> Result<Vec<Listed>, CarError> {
    let mut reader = CarReader::new(car)?;
    let mut out = Vec::new();
    while let Some((cid, data)) = reader.next_block()? {
        let data = data.to_vec();
        out.push((cid, data, reader.last_block_span()));
    }
    Ok(out)
}

/// The DAG walked depth-first from `root` in link order, each block once.
fn preorder(root: Cid, store: &HashMap<Cid, Vec<u8>>) -> Vec<Cid> {
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    let mut stack = vec![root];
    while let Some(cid) = stack.pop() {
        if !seen.insert(cid) {
            continue;
        }
        order.push(cid);
        if cid.codec() == DAG_PB {
            let node = store
                .get(&cid)
                .and_then(|b| PbNode::decode(b).ok())
                .unwrap_or_default();
            for link in node.links.iter().rev() {
                stack.extend(Cid::try_from(link.hash).ok());
            }
        }
    }
    order
}

#[test]
fn tree_round_trips_through_a_car_in_both_profiles() -> TestResult {
    let dir = tempfile::tempdir()?;
    let tree = dir.path().join("tree");
    fs::create_dir(&tree)?;
    reference_tree(&tree)?;
    for (profile, out_name) in [(Profile::V0Default, "v0"), (Profile::V1RawLeaves, "v1")] {
        let (root, car) = car_of(&tree, profile)?;
        assert_eq!(root, import_path(&tree, profile)?);

        let summary = verify_car(&car[..], &root)?;
        assert_eq!(summary.blocks, summary.reachable, "no stray blocks");
        assert_eq!(summary.bytes, car.len() as u64);

        // DAG order: root first, then depth-first in link order, each block once.
        let listed = blocks(&car)?;
        let store: HashMap<Cid, Vec<u8>> = listed.iter().map(|(c, d, _)| (*c, d.clone())).collect();
        assert_eq!(store.len(), listed.len(), "each block once");
        let order: Vec<Cid> = listed.iter().map(|(c, _, _)| *c).collect();
        assert_eq!(order, preorder(root, &store));

        let out = dir.path().join(out_name);
        let exported = export_car(Cursor::new(&car), &root, &out)?;
        assert_eq!((exported.files, exported.directories), (6, 4));
        assert_eq!(snapshot(&out)?, snapshot(&tree)?);
        assert_eq!(import_path(&out, profile)?, root);
        verify_path(&out, &root)?;
    }
    Ok(())
}

#[test]
fn files_round_trip_whatever_their_size_or_repeats() -> TestResult {
    let dir = tempfile::tempdir()?;
    let zeros = vec![0u8; 3 * K];
    let repeated: Vec<u8> = [&zeros[..], &xorshift(K), &zeros[..], b"tail"].concat();
    let cases: [(&str, &[u8]); 4] = [
        ("empty", b""),
        ("small", b"Hello Worlds!\n"),
        ("one chunk", &zeros[..K]),
        ("repeats", &repeated),
    ];
    for profile in [Profile::V0Default, Profile::V1RawLeaves] {
        for (name, content) in cases {
            let source = dir.path().join("source");
            fs::write(&source, content)?;
            let (root, car) = car_of(&source, profile)?;
            verify_car(&car[..], &root)?;
            let out = dir.path().join(format!("{name}-{profile:?}"));
            export_car(Cursor::new(&car), &root, &out)?;
            assert_eq!(fs::read(&out)?, content, "{name} {profile:?}");
            assert_eq!(import_path(&out, profile)?, root, "{name} {profile:?}");
        }
    }
    // Identical chunks are stored once: 3 distinct leaves + 1 root + tail.
    fs::write(dir.path().join("source"), &repeated)?;
    let (_, car) = car_of(&dir.path().join("source"), Profile::V1RawLeaves)?;
    assert_eq!(blocks(&car)?.len(), 4);
    Ok(())
}

#[test]
fn flipped_byte_in_any_car_block_names_that_block() -> TestResult {
    let dir = tempfile::tempdir()?;
    reference_tree(dir.path())?;
    let (root, car) = car_of(dir.path(), Profile::V0Default)?;
    for (index, (cid, _, (offset, len))) in blocks(&car)?.into_iter().enumerate() {
        if len == 0 {
            continue;
        }
        let mut forged = car.clone();
        forged[offset as usize + len / 2] ^= 0x01;
        match verify_car(&forged[..], &root) {
            Err(VerifyError::Car(CarError::HashMismatch { index: i, cid: c })) => {
                assert_eq!((i, c), (index as u64, cid));
                let message =
                    VerifyError::Car(CarError::HashMismatch { index: i, cid: c }).to_string();
                assert!(
                    message.contains(&cid.to_string()) && message.contains(&format!("#{index}"))
                );
            }
            other => panic!("block #{index}: expected a hash mismatch, got {other:?}"),
        }
        let out = dir.path().join(format!("export-{index}"));
        assert!(export_car(Cursor::new(&forged), &root, &out).is_err());
    }
    Ok(())
}

#[test]
fn flipped_byte_in_a_file_names_that_file() -> TestResult {
    let dir = tempfile::tempdir()?;
    let tree = dir.path().join("tree");
    fs::create_dir(&tree)?;
    reference_tree(&tree)?;
    let (root, car) = car_of(&tree, Profile::V0Default)?;

    let big = tree.join("sub/big.bin");
    let mut bytes = fs::read(&big)?;
    bytes[K / 2] ^= 0x80;
    fs::write(&big, &bytes)?;

    // With only the CID, the error names the path that was checked.
    match verify_path(&tree, &root) {
        Err(VerifyError::Mismatch { path, expected, .. }) => {
            assert_eq!((path, expected), (tree.clone(), root))
        }
        other => panic!("expected a mismatch, got {other:?}"),
    }
    // With the expected DAG, it names the file.
    match diff_path_against_car(&tree, Cursor::new(&car), &root) {
        Err(VerifyError::Mismatch { path, .. }) => assert_eq!(path, big),
        other => panic!("expected a mismatch on big.bin, got {other:?}"),
    }

    // Missing and extra entries are named too.
    bytes[K / 2] ^= 0x80;
    fs::write(&big, &bytes)?;
    fs::remove_file(tree.join("sub/nested/deep.txt"))?;
    match diff_path_against_car(&tree, Cursor::new(&car), &root) {
        Err(VerifyError::EntryMismatch { path, .. }) => {
            assert_eq!(path, tree.join("sub/nested/deep.txt"))
        }
        other => panic!("expected a missing entry, got {other:?}"),
    }
    fs::write(tree.join("sub/nested/deep.txt"), b"deep\n")?;
    fs::write(tree.join("extra"), b"")?;
    match diff_path_against_car(&tree, Cursor::new(&car), &root) {
        Err(VerifyError::EntryMismatch { path, .. }) => assert_eq!(path, tree.join("extra")),
        other => panic!("expected an extra entry, got {other:?}"),
    }
    fs::remove_file(tree.join("extra"))?;
    verify_path(&tree, &root)?;
    diff_path_against_car(&tree, Cursor::new(&car), &root)?;
    Ok(())
}

#[test]
fn verify_path_accepts_a_cidv0_written_as_cidv1() -> TestResult {
    // kubo t0040: `ipfs add --cid-base=base32` upgrades the CIDv0 to v1 form.
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("base32-test.txt");
    fs::write(&file, b"base32 test\n")?;
    let cid: Cid = "bafybeibyosqxljd2eptb4ebbtvk7pb4aoxzqa6ttdsflty6rsslz5y6i34".parse()?;
    verify_path(&file, &cid)?;
    assert_eq!(import_path(&file, Profile::V0Default)?.into_v1()?, cid);
    Ok(())
}

#[test]
fn missing_block_and_wrong_root_are_named() -> TestResult {
    let dir = tempfile::tempdir()?;
    reference_tree(dir.path())?;
    let (root, car) = car_of(dir.path(), Profile::V1RawLeaves)?;
    let listed = blocks(&car)?;
    let (dropped, _, _) = &listed[2];
    let mut writer = CarWriter::new(Vec::new(), &[root])?;
    for (cid, data, _) in listed.iter().filter(|(c, _, _)| c != dropped) {
        writer.put(cid, data)?;
    }
    let partial = writer.finish()?;
    match verify_car(&partial[..], &root) {
        Err(VerifyError::MissingBlock { cid, .. }) => assert_eq!(cid, *dropped),
        other => panic!("expected a missing block, got {other:?}"),
    }
    assert!(matches!(
        verify_car(&car[..], dropped),
        Err(VerifyError::RootNotInHeader { .. })
    ));
    Ok(())
}

/// A CAR holding one directory whose only entry, named `name`, is an empty file.
fn car_with_entry_named(names: &[&str]) -> Result<(Cid, Vec<u8>), Box<dyn std::error::Error>> {
    let mut file = UnixFsData::new(DataType::File);
    file.filesize = Some(0);
    let file_data = encode(&file);
    let leaf = encode(&PbNode {
        links: vec![],
        data: Some(&file_data),
    });
    let leaf_cid = block_cid(Version::V0, DAG_PB, &leaf);
    let hash = leaf_cid.to_bytes();
    let dir_data = encode(&UnixFsData::new(DataType::Directory));
    let links = names
        .iter()
        .map(|name| PbLink {
            hash: &hash,
            name: Some(name),
            tsize: Some(6),
        })
        .collect();
    let dir = encode(&PbNode {
        links,
        data: Some(&dir_data),
    });
    let dir_cid = block_cid(Version::V0, DAG_PB, &dir);
    let mut writer = CarWriter::new(Vec::new(), &[dir_cid])?;
    writer.put(&dir_cid, &dir)?;
    writer.put(&leaf_cid, &leaf)?;
    Ok((dir_cid, writer.finish()?))
}

#[test]
fn export_refuses_names_that_could_escape_the_output() -> TestResult {
    let dir = tempfile::tempdir()?;
    let cases: [&[&str]; 6] = [
        &[".."],
        &["."],
        &[""],
        &["a/b"],
        &["../../etc/passwd"],
        &["same", "same"],
    ];
    for (i, names) in cases.into_iter().enumerate() {
        let (root, car) = car_with_entry_named(names)?;
        verify_car(&car[..], &root)?;
        let out = dir.path().join(format!("out{i}"));
        match export_car(Cursor::new(&car), &root, &out) {
            Err(ExportError::BadName { .. }) => {}
            other => panic!("{names:?}: expected a bad name, got {other:?}"),
        }
    }
    assert!(!dir.path().join("etc").exists());
    Ok(())
}

#[test]
fn export_never_overwrites_an_existing_path() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (root, car) = car_with_entry_named(&["file"])?;
    let out = dir.path().join("out");
    fs::create_dir(&out)?;
    assert!(matches!(
        export_car(Cursor::new(&car), &root, &out),
        Err(ExportError::Write { .. })
    ));
    fs::remove_dir(&out)?;
    export_car(Cursor::new(&car), &root, &out)?;
    assert_eq!(fs::read(out.join("file"))?, b"");
    Ok(())
}

#[test]
fn symlinks_are_packed_and_verified_but_not_exported() -> TestResult {
    let dir = tempfile::tempdir()?;
    let tree = dir.path().join("tree");
    fs::create_dir(&tree)?;
    fs::write(tree.join("target"), b"data")?;
    std::os::unix::fs::symlink("../../outside", tree.join("link"))?;
    let (root, car) = car_of(&tree, Profile::V0Default)?;
    verify_car(&car[..], &root)?;
    verify_path(&tree, &root)?;
    match export_car(Cursor::new(&car), &root, &dir.path().join("out")) {
        Err(ExportError::Unsupported { path, .. }) => assert_eq!(path, dir.path().join("out/link")),
        other => panic!("expected the symlink to be refused, got {other:?}"),
    }
    Ok(())
}

#[test]
fn truncated_car_is_an_error_not_a_panic() -> TestResult {
    let dir = tempfile::tempdir()?;
    reference_tree(dir.path())?;
    let (root, car) = car_of(dir.path(), Profile::V0Default)?;
    for cut in (0..car.len()).step_by(997) {
        assert!(verify_car(&car[..cut], &root).is_err(), "cut at {cut}");
    }
    Ok(())
}
