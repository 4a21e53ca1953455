//! Gateway handlers, served on a real socket and read with a real client.

use std::path::Path;
use std::sync::Arc;

use shoal_publishers::content::{
    CarReader, Profile, RAW, block_cid, export_car, import_path, verify_car, verify_path,
};
use shoal_publishers::ipfs::{BlockStore, STORE_FILE};

use super::*;

struct Fixture {
    _dir: tempfile::TempDir,
    base: String,
    root: Cid,
    tree: std::path::PathBuf,
    small: Cid,
}

async fn serve(store: Arc<BlockStore>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(store)).await });
    format!("http://{addr}")
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("out");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    let big: Vec<u8> = (0..700_000u32).map(|i| (i * 7 % 256) as u8).collect();
    std::fs::write(tree.join("big.bin"), &big).unwrap();
    std::fs::write(tree.join("sub/small.txt"), b"small file\n").unwrap();
    let root = import_path(&tree, Profile::V1RawLeaves).unwrap();
    let store = Arc::new(BlockStore::open(&dir.path().join(STORE_FILE), None).unwrap());
    store.import_path(&tree, &root, None).unwrap();
    let base = serve(store).await;
    Fixture {
        _dir: dir,
        base,
        root,
        tree,
        small: block_cid(cid::Version::V1, RAW, b"small file\n"),
    }
}

fn content_type(r: &reqwest::Response) -> String {
    r.headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn raw_block_by_format_or_accept() {
    let f = fixture().await;
    let http = reqwest::Client::new();
    let r = http
        .get(format!("{}/ipfs/{}?format=raw", f.base, f.small))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(content_type(&r), RAW_MEDIA_TYPE);
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    assert_eq!(&r.bytes().await.unwrap()[..], b"small file\n");

    let r = http
        .get(format!("{}/ipfs/{}", f.base, f.root))
        .header("accept", "application/vnd.ipld.raw")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let block = r.bytes().await.unwrap();
    assert_eq!(
        shoal_publishers::content::cid_matches(&f.root, &block),
        Some(true)
    );
}

#[tokio::test]
async fn car_of_the_whole_dag_verifies_and_exports_to_the_same_tree() {
    let f = fixture().await;
    let r = reqwest::Client::new()
        .get(format!("{}/ipfs/{}?format=car", f.base, f.root))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(content_type(&r), CAR_CONTENT_TYPE);
    let car = r.bytes().await.unwrap().to_vec();
    let summary = verify_car(car.as_slice(), &f.root).unwrap();
    assert!(summary.blocks >= 5, "{summary:?}");
    let out = f._dir.path().join("exported");
    export_car(std::io::Cursor::new(car), &f.root, &out).unwrap();
    verify_path(&out, &f.root).unwrap();
    assert_eq!(
        std::fs::read(out.join("big.bin")).unwrap(),
        std::fs::read(f.tree.join("big.bin")).unwrap()
    );
}

#[tokio::test]
async fn dag_scope_block_and_entity_of_a_directory_send_the_root_only() {
    let f = fixture().await;
    for scope in ["block", "entity"] {
        let r = reqwest::Client::new()
            .get(format!(
                "{}/ipfs/{}?format=car&dag-scope={scope}",
                f.base, f.root
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let car = r.bytes().await.unwrap().to_vec();
        let mut reader = CarReader::new(car.as_slice()).unwrap();
        assert_eq!(reader.roots(), &[f.root]);
        let (cid, _) = reader.next_block().unwrap().unwrap();
        assert_eq!(cid, f.root);
        assert!(reader.next_block().unwrap().is_none(), "{scope}");
    }
}

#[tokio::test]
async fn unknown_cid_is_404_and_bad_requests_are_400() {
    let f = fixture().await;
    let http = reqwest::Client::new();
    let unknown = block_cid(cid::Version::V1, RAW, b"never stored");
    let status = |url: String| {
        let http = http.clone();
        async move { http.get(url).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(
        status(format!("{}/ipfs/{unknown}?format=raw", f.base)).await,
        404
    );
    assert_eq!(
        status(format!("{}/ipfs/{unknown}?format=car", f.base)).await,
        404
    );
    assert_eq!(
        status(format!("{}/ipfs/not-a-cid?format=raw", f.base)).await,
        400
    );
    // Trustless only: no deserialized responses.
    assert_eq!(status(format!("{}/ipfs/{}", f.base, f.root)).await, 400);
    assert_eq!(
        status(format!("{}/ipfs/{}?format=tar", f.base, f.root)).await,
        400
    );
    assert_eq!(
        status(format!("{}/ipfs/{}/sub?format=car", f.base, f.root)).await,
        400
    );
}

#[tokio::test]
async fn gateway_client_fetches_and_verifies_a_tree() {
    let f = fixture().await;
    let dest = f._dir.path().join("fetched");
    let summary = shoal_publishers::ipfs::fetch_car_from_gateway(
        &reqwest::Client::new(),
        &f.base,
        &f.root,
        &dest,
    )
    .await
    .unwrap();
    assert_eq!(summary.files, 2);
    verify_path(&dest, &f.root).unwrap();
    assert!(!has_partial(f._dir.path()));
}

#[tokio::test]
async fn gateway_client_rejects_a_gateway_without_the_cid() {
    let f = fixture().await;
    let unknown = block_cid(cid::Version::V1, RAW, b"never stored");
    let dest = f._dir.path().join("nothing");
    let err = shoal_publishers::ipfs::fetch_car_from_gateway(
        &reqwest::Client::new(),
        &f.base,
        &unknown,
        &dest,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
    assert!(!dest.exists());
}

fn has_partial(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .unwrap()
        .any(|e| e.unwrap().file_name().to_string_lossy().contains("partial"))
}
