//! Block store, CAR streaming and Kubo request tests.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt;

use super::kubo::{PushError, check_response, multipart_frame};
use super::*;
use crate::content::{Profile, RAW, block_cid, import_path, verify_car};

fn open(dir: &Path, limit: Option<u64>) -> Arc<BlockStore> {
    Arc::new(BlockStore::open(&dir.join(STORE_FILE), limit).unwrap())
}

fn raw(data: &[u8]) -> Cid {
    block_cid(cid::Version::V1, RAW, data)
}

/// A tree with a multi-chunk file (internal nodes), a small file and a subdir.
fn sample_tree(dir: &Path) -> std::path::PathBuf {
    let root = dir.join("out");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    let big: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(root.join("big.bin"), &big).unwrap();
    std::fs::write(root.join("sub/small.txt"), b"hello shoal\n").unwrap();
    root
}

#[test]
fn put_get_has_round_trip_and_verify_on_put() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), None);
    let cid = raw(b"block one");
    assert!(!store.has(&cid).unwrap());
    assert!(store.put(&cid, b"block one").unwrap());
    assert!(
        !store.put(&cid, b"block one").unwrap(),
        "second put is not new"
    );
    assert_eq!(store.get(&cid).unwrap().as_deref(), Some(&b"block one"[..]));
    assert!(store.has(&cid).unwrap());
    assert_eq!(store.used_bytes().unwrap(), 9);

    let err = store.put(&cid, b"forged").unwrap_err();
    assert!(matches!(err, StoreError::HashMismatch { .. }), "{err}");
    assert_eq!(store.get(&cid).unwrap().as_deref(), Some(&b"block one"[..]));
}

#[test]
fn blocks_and_pins_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let cid = raw(b"durable");
    {
        let store = open(dir.path(), None);
        store.put(&cid, b"durable").unwrap();
        store.pin(&cid, None).unwrap();
    }
    let store = open(dir.path(), None);
    assert_eq!(store.get(&cid).unwrap().as_deref(), Some(&b"durable"[..]));
    assert_eq!(
        store.pins().unwrap(),
        vec![Pin {
            root: cid,
            expires: None
        }]
    );
    assert_eq!(store.used_bytes().unwrap(), 7);
}

#[test]
fn second_open_of_the_same_file_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let _store = open(dir.path(), None);
    let err = BlockStore::open(&dir.path().join(STORE_FILE), None).unwrap_err();
    assert!(matches!(err, StoreError::InUse { .. }), "{err}");
}

#[test]
fn gc_keeps_every_block_reachable_from_a_pin_and_frees_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), None);
    let tree = sample_tree(dir.path());
    let root = import_path(&tree, Profile::V1RawLeaves).unwrap();
    store.import_path(&tree, &root, None).unwrap();
    let loose = raw(b"nobody pins me");
    store.put(&loose, b"nobody pins me").unwrap();
    let before = store.block_count().unwrap();

    let report = store.gc().unwrap();
    assert_eq!(report.blocks_removed, 1);
    assert_eq!(report.bytes_freed, 14);
    assert_eq!(report.blocks_kept, before - 1);
    assert!(!store.has(&loose).unwrap());
    assert_eq!(store.first_missing(&root).unwrap(), None);

    // Unpinned, the whole DAG goes.
    assert!(store.unpin(&root).unwrap());
    let report = store.gc().unwrap();
    assert_eq!(report.blocks_removed, before - 1);
    assert_eq!(store.block_count().unwrap(), 0);
    assert_eq!(store.used_bytes().unwrap(), 0);
}

#[test]
fn expired_pins_are_dropped_by_gc_and_longer_pins_win() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), None);
    let a = raw(b"a");
    let b = raw(b"b");
    store.put(&a, b"a").unwrap();
    store.put(&b, b"b").unwrap();
    let now = SystemTime::now();
    store
        .pin(&a, Some(now + Duration::from_secs(3600)))
        .unwrap();
    store.pin(&b, Some(now + Duration::from_secs(60))).unwrap();
    // Re-pinning with a shorter expiry does not shorten the pin.
    store.pin(&b, Some(now + Duration::from_secs(10))).unwrap();

    let report = store.gc_at(now + Duration::from_secs(30)).unwrap();
    assert_eq!((report.pins_expired, report.blocks_removed), (0, 0));
    let report = store.gc_at(now + Duration::from_secs(120)).unwrap();
    assert_eq!((report.pins_expired, report.blocks_removed), (1, 1));
    assert!(store.has(&a).unwrap() && !store.has(&b).unwrap());
    assert_eq!(store.pins().unwrap().len(), 1);
}

#[test]
fn leased_blocks_survive_gc_until_the_lease_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), None);
    let cid = raw(b"in flight");
    let mut lease = store.lease();
    lease
        .put_many(&[(cid, b"in flight".to_vec())], redb::Durability::Immediate)
        .unwrap();
    assert_eq!(store.gc().unwrap().blocks_removed, 0);
    drop(lease);
    assert_eq!(store.gc().unwrap().blocks_removed, 1);
}

#[test]
fn size_limit_collects_garbage_first_then_refuses_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Some(100));
    let pinned = vec![1u8; 60];
    let loose = vec![2u8; 30];
    store.put(&raw(&pinned), &pinned).unwrap();
    store.pin(&raw(&pinned), None).unwrap();
    store.put(&raw(&loose), &loose).unwrap();

    // 60 + 30 + 30 > 100: gc frees the loose block and the put fits.
    let next = vec![3u8; 30];
    assert!(store.put(&raw(&next), &next).unwrap());
    assert!(!store.has(&raw(&loose)).unwrap());

    // 60 + 30 (unpinned, freed) + 50 > 100 even after gc? 60 + 50 = 110.
    let big = vec![4u8; 50];
    let err = store.put(&raw(&big), &big).unwrap_err();
    match &err {
        StoreError::Full {
            needed,
            used,
            limit,
        } => assert_eq!((*needed, *used, *limit), (50, 60, 100)),
        other => panic!("expected Full, got {other}"),
    }
    assert!(err.to_string().contains("max_store_mb"), "{err}");
    assert!(!store.has(&raw(&big)).unwrap());
}

#[test]
fn import_refuses_a_path_whose_root_is_not_the_expected_cid() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), None);
    let tree = sample_tree(dir.path());
    let wrong = raw(b"something else");
    let err = store.import_path(&tree, &wrong, None).unwrap_err();
    assert!(matches!(err, StoreError::RootMismatch { .. }), "{err}");
    assert!(store.pins().unwrap().is_empty());
}

#[tokio::test]
async fn car_stream_is_a_verifiable_car_of_the_whole_dag() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), None);
    let tree = sample_tree(dir.path());
    let root = import_path(&tree, Profile::V1RawLeaves).unwrap();
    store.import_path(&tree, &root, None).unwrap();

    let chunks: Vec<_> = car_stream(Arc::clone(&store), root).collect().await;
    let car: Vec<u8> = chunks
        .into_iter()
        .flat_map(|c| c.unwrap().to_vec())
        .collect();
    let summary = verify_car(car.as_slice(), &root).unwrap();
    assert_eq!(summary.reachable, store.block_count().unwrap());

    let out = dir.path().join("exported");
    crate::content::export_car(std::io::Cursor::new(car), &root, &out).unwrap();
    crate::content::verify_path(&out, &root).unwrap();
}

#[tokio::test]
async fn car_stream_ends_in_an_error_naming_a_missing_block() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), None);
    let tree = sample_tree(dir.path());
    let root = import_path(&tree, Profile::V1RawLeaves).unwrap();
    store.import_path(&tree, &root, None).unwrap();
    let small = raw(b"hello shoal\n");
    // A second store holding the DAG minus one leaf.
    let dir2 = tempfile::tempdir().unwrap();
    let partial = open(dir2.path(), None);
    let mut car = Vec::new();
    store.write_car(&root, &mut car).unwrap();
    let mut reader = crate::content::CarReader::new(car.as_slice()).unwrap();
    while let Some((cid, data)) = reader.next_block().unwrap() {
        if cid != small {
            partial.put(&cid, data).unwrap();
        }
    }
    assert_eq!(partial.first_missing(&root).unwrap(), Some(small));
    let items: Vec<_> = car_stream(Arc::clone(&partial), root).collect().await;
    let err = items
        .into_iter()
        .find_map(|i| i.err())
        .expect("stream ends in an error");
    assert!(err.to_string().contains(&small.to_string()), "{err}");
}

#[test]
fn kubo_request_is_a_dag_import_multipart_post() {
    let root: Cid = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
        .parse()
        .unwrap();
    let req = multipart_frame("http://127.0.0.1:5001/", &root).unwrap();
    // Kubo RPC: POST /api/v0/dag/import, CAR in the `file` form field,
    // `pin-roots=true` to pin the header's root.
    assert_eq!(
        req.url,
        "http://127.0.0.1:5001/api/v0/dag/import?pin-roots=true"
    );
    let boundary = req
        .content_type
        .strip_prefix("multipart/form-data; boundary=")
        .expect("multipart content type");
    let head = String::from_utf8(req.head.clone()).unwrap();
    assert!(head.starts_with(&format!("--{boundary}\r\n")));
    assert!(head.contains("Content-Disposition: form-data; name=\"file\"; filename="));
    assert!(head.ends_with("\r\n\r\n"));
    assert_eq!(
        String::from_utf8(req.tail).unwrap(),
        format!("\r\n--{boundary}--\r\n")
    );
    assert!(matches!(
        multipart_frame("ftp://x", &root),
        Err(PushError::Url(_))
    ));
}

#[test]
fn kubo_answer_must_name_our_root_pinned() {
    let root: Cid = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
        .parse()
        .unwrap();
    let ok = format!("{{\"Root\":{{\"Cid\":{{\"/\":\"{root}\"}},\"PinErrorMsg\":\"\"}}}}\n");
    check_response(&ok, &root).unwrap();
    let with_stats = format!("{ok}{{\"Stats\":{{\"BlockCount\":1,\"BlockBytesCount\":0}}}}\n");
    check_response(&with_stats, &root).unwrap();
    let pin_failed = format!(
        "{{\"Root\":{{\"Cid\":{{\"/\":\"{root}\"}},\"PinErrorMsg\":\"block was not found locally\"}}}}"
    );
    let err = check_response(&pin_failed, &root).unwrap_err();
    assert!(err.to_string().contains("not found locally"), "{err}");
    let other = "{\"Root\":{\"Cid\":{\"/\":\"bafkqaaa\"},\"PinErrorMsg\":\"\"}}";
    assert!(check_response(other, &root).is_err());
    assert!(check_response("", &root).is_err());
}
