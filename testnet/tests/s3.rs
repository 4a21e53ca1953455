//! S3 tests against a real S3 API server (moto's server, which these tests
//! start; `scripts/setup-test-deps` installs it). They fail, never skip,
//! when it is missing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use shoal_publishers::content::{self, Profile};
use shoal_publishers::s3::{self, MANIFEST, S3Publisher, S3PublisherConfig, ShardManifest};
use shoal_publishers::target::{S3Target, Target};
use shoal_publishers::{Output, Publisher};
use shoal_requester::model::{JobState, JobView, Manifest, ShardState};
use shoal_testnet::demo::{post_job, wait_for_job};
use shoal_testnet::s3::{self as local_s3, Gate, MotoServer};
use shoal_testnet::{Options, Testnet, files_under, shoal_cli};

const BUCKET: &str = "shoal-out";

async fn moto(env: &[(&str, &str)]) -> MotoServer {
    match MotoServer::start(env).await {
        Ok(m) => m,
        Err(e) => panic!("cannot start the S3 test server: {e:#}"),
    }
}

async fn publisher(endpoint: &str, allow: &[&str]) -> S3Publisher {
    S3Publisher::new(S3PublisherConfig {
        settings: local_s3::settings(endpoint),
        allow: allow.iter().map(|s| s.to_string()).collect(),
        part_size: 5 << 20,
        concurrency: 8,
    })
    .await
    .unwrap()
}

/// Deterministic pseudo-random bytes.
fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

async fn get_object(client: &s3::Client, bucket: &str, key: &str) -> Vec<u8> {
    client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("get {key}: {e:?}"))
        .body
        .collect()
        .await
        .unwrap()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread")]
async fn large_and_many_small_files_round_trip_with_checksummed_manifest() {
    let server = moto(&[]).await;
    let client = local_s3::client(&server.endpoint).await;
    local_s3::create_bucket(&client, BUCKET).await.unwrap();

    let out = tempfile::tempdir().unwrap();
    let big = bytes(23 << 20, 7); // five parts of 5 MiB
    std::fs::write(out.path().join("big.bin"), &big).unwrap();
    std::fs::create_dir_all(out.path().join("small/deeper")).unwrap();
    std::fs::create_dir_all(out.path().join("nothing-here")).unwrap();
    for i in 0..150 {
        let dir = if i % 2 == 0 { "small" } else { "small/deeper" };
        std::fs::write(
            out.path().join(format!("{dir}/f{i:03}.txt")),
            format!("file {i}\n"),
        )
        .unwrap();
    }
    let cid = content::import_path(out.path(), Profile::V1RawLeaves).unwrap();
    let publisher = publisher(&server.endpoint, &[BUCKET]).await;
    let target = Target::S3(S3Target {
        bucket: BUCKET.into(),
        prefix: "results/{job}/{shard}".into(),
    });
    let output = Output {
        job: "job1",
        shard: 4,
        node: "12D3KooWnode",
        dir: out.path(),
        cid: &cid,
    };
    publisher.check(&target).unwrap();
    let location = publisher.publish(&target, output).await.unwrap();
    assert_eq!(location.url, format!("s3://{BUCKET}/results/job1/4/"));

    // Bytes identical, read back with the SDK.
    assert_eq!(
        get_object(&client, BUCKET, "results/job1/4/big.bin").await,
        big
    );
    assert_eq!(
        get_object(&client, BUCKET, "results/job1/4/small/deeper/f149.txt").await,
        b"file 149\n"
    );
    // The manifest lists every file with its real sha256.
    let manifest: ShardManifest =
        serde_json::from_slice(&get_object(&client, BUCKET, "results/job1/4/_shoal.json").await)
            .unwrap();
    assert_eq!(manifest.cid, cid.to_string());
    assert_eq!((manifest.job.as_str(), manifest.shard), ("job1", 4));
    assert_eq!(manifest.files.len(), 151);
    for file in &manifest.files {
        let data = std::fs::read(out.path().join(&file.path)).unwrap();
        assert_eq!(file.size, data.len() as u64, "{}", file.path);
        assert_eq!(
            file.sha256,
            hex::encode(Sha256::digest(&data)),
            "{}",
            file.path
        );
    }
    assert_eq!(manifest.empty_dirs, ["nothing-here"]);
    // The listing holds exactly the files and the manifest.
    let listed = s3::list_objects(&client, BUCKET, "results/job1/4/")
        .await
        .unwrap();
    assert_eq!(listed.len(), 152);

    // Publishing again is idempotent: same location, objects untouched.
    let before = s3::list_objects(&client, BUCKET, "results/").await.unwrap();
    assert_eq!(publisher.publish(&target, output).await.unwrap(), location);
    assert_eq!(
        s3::list_objects(&client, BUCKET, "results/").await.unwrap(),
        before
    );

    // Fetching it back reproduces the CID exactly (empty dir included).
    let back = tempfile::tempdir().unwrap();
    s3::fetch_shard(&client, BUCKET, "results/job1/4/", back.path())
        .await
        .unwrap();
    content::verify_path(back.path(), &cid).unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn targets_outside_the_allow_list_and_missing_buckets_are_refused() {
    let server = moto(&[]).await;
    let publisher = publisher(&server.endpoint, &["shoal-out/allowed/"]).await;
    let outside = Target::S3(S3Target {
        bucket: BUCKET.into(),
        prefix: "elsewhere/{shard}".into(),
    });
    let reason = publisher.check(&outside).unwrap_err();
    assert!(reason.contains("publishers.s3.allow"), "{reason}");
    let other_bucket = Target::S3(S3Target {
        bucket: "someone-elses".into(),
        prefix: "allowed/".into(),
    });
    assert!(publisher.check(&other_bucket).is_err());

    // Allowed, but the bucket does not exist: a clear, final error.
    let inside = Target::S3(S3Target {
        bucket: BUCKET.into(),
        prefix: "allowed/{shard}".into(),
    });
    publisher.check(&inside).unwrap();
    let out = tempfile::tempdir().unwrap();
    std::fs::write(out.path().join("a"), b"a").unwrap();
    let cid = content::import_path(out.path(), Profile::V1RawLeaves).unwrap();
    let output = Output {
        job: "j",
        shard: 0,
        node: "n",
        dir: out.path(),
        cid: &cid,
    };
    let err = publisher.publish(&inside, output).await.unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert!(err.to_string().contains("NoSuchBucket"), "{err}");
    server.stop().await;
}

// ---- multi-process tests: real nodes and a requester ----

fn options(endpoint: &str, allow: &'static str) -> Options {
    let mut options = Options::new(PathBuf::from(env!("CARGO_BIN_EXE_shoal-testnet")));
    options.converge_timeout = Duration::from_secs(30);
    options.env = local_s3::env();
    let endpoint = endpoint.to_string();
    options.configure = Box::new(move |_, config| {
        local_s3::configure_node(config, &endpoint, allow);
        // Small parts so outputs here are multipart uploads.
        config.publishers.s3.part_size_mb = 5;
    });
    options
}

fn job_spec(name: &str, script: &str, inputs: &str, publish: &str) -> String {
    format!(
        r#"name: {name}
executor:
  type: shell
  command: ["sh", "-c", {script:?}]
inputs: {inputs}
sharding: {{batch_size: 1}}
resources: {{cpu: 1, timeout: 120s}}
publish: [{publish}]
"#
    )
}

fn inline_inputs(n: usize) -> String {
    let items: Vec<String> = (0..n)
        .map(|i| format!("{{name: in{i}.txt, content: \"input {i}\"}}"))
        .collect();
    format!("{{inline: [{}]}}", items.join(", "))
}

async fn describe(api: &str, id: &str) -> JobView {
    reqwest::get(format!("{api}/jobs/{id}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn manifest(api: &str, id: &str) -> Manifest {
    reqwest::get(format!("{api}/jobs/{id}/results"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Keys of every `_shoal.json` under `prefix`, read from the server itself.
async fn manifests_present(client: &s3::Client, prefix: &str) -> Vec<String> {
    s3::list_objects(client, BUCKET, prefix)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .filter(|k| k.ends_with(MANIFEST))
        .collect()
}

/// Every shard the requester calls published has its `_shoal.json` on the
/// server. The view is read first: publication only ever grows.
async fn assert_no_early_publish(api: &str, id: &str, direct: &s3::Client) -> usize {
    let view = describe(api, id).await;
    let present = manifests_present(direct, &format!("{id}/")).await;
    let published: Vec<u32> = view
        .shards
        .iter()
        .filter(|s| s.state == ShardState::Published)
        .map(|s| s.index)
        .collect();
    for index in &published {
        let key = format!("{id}/{index}/{MANIFEST}");
        assert!(
            present.contains(&key),
            "shard {index} reported published before {key} existed"
        );
    }
    published.len()
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_outage_during_publishing_is_retried_and_nothing_is_published_early() {
    let server = moto(&[]).await;
    let direct = local_s3::client(&server.endpoint).await;
    local_s3::create_bucket(&direct, BUCKET).await.unwrap();
    // Nodes reach S3 only through the gate.
    let gate = Gate::open_to(server.addr).await.unwrap();
    let mut net = Testnet::start(3, options(&gate.endpoint(), BUCKET))
        .await
        .unwrap();
    let api = net
        .start_requester(&["--heartbeat-timeout", "30"])
        .await
        .unwrap();
    // 8 shards of 12 MiB each: three parts apiece, so cuts land mid-upload.
    let script = r#"head -c 12582912 /dev/urandom > "$SHOAL_OUTPUT/blob.bin"; cat "$SHOAL_INPUTS"/* > "$SHOAL_OUTPUT/in.txt""#;
    let spec = job_spec(
        "outage",
        script,
        &inline_inputs(8),
        &format!("{{s3: {{bucket: {BUCKET}, prefix: \"{{job}}/{{shard}}\"}}}}"),
    );
    let http = reqwest::Client::new();
    let job = post_job(&http, &api, spec).await.unwrap();

    // Cut S3 off as soon as publishing is under way.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let view = describe(&api, &job.id).await;
        let publishing = view
            .shards
            .iter()
            .any(|s| matches!(s.state, ShardState::Publishing | ShardState::Published));
        if publishing {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no shard reached publishing: {view:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gate.close().await;
    let down_at = tokio::time::Instant::now();
    let published_before = assert_no_early_publish(&api, &job.id, &direct).await;
    // Three seconds of outage, checking all the while.
    while down_at.elapsed() < Duration::from_secs(3) {
        let now = assert_no_early_publish(&api, &job.id, &direct).await;
        assert!(now <= 8);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    gate.open().await.unwrap();
    let view = wait_for_job(&http, &api, &job.id, Duration::from_secs(120))
        .await
        .unwrap();
    assert_eq!(view.state, JobState::Completed, "{view:?}");
    assert_eq!(assert_no_early_publish(&api, &job.id, &direct).await, 8);
    assert!(
        published_before < 8,
        "the outage came after everything was published"
    );
    // Every shard is complete on the server and matches its CID.
    let manifest = manifest(&api, &job.id).await;
    let dir = tempfile::tempdir().unwrap();
    let fetcher = shoal_requester::get::Fetcher {
        s3: local_s3::settings(&server.endpoint),
        ..Default::default()
    };
    let results = shoal_requester::get::get_job(&fetcher, &manifest, dir.path(), None, |_, _| {})
        .await
        .unwrap();
    for (shard, outcome) in results {
        outcome.unwrap_or_else(|e| panic!("shard {shard}: {e}"));
    }
    net.stop().await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_credentials_fail_the_shard_and_a_disallowed_bucket_is_declined() {
    // This server checks credentials (moto's IAM auth): ours are unknown.
    let strict = moto(&[("INITIAL_NO_AUTH_ACTION_COUNT", "0")]).await;
    let mut net = Testnet::start(2, options(&strict.endpoint, "shoal-*"))
        .await
        .unwrap();
    let api = net.start_requester(&[]).await.unwrap();
    let echo = r#"cat "$SHOAL_INPUTS"/* > "$SHOAL_OUTPUT/out.txt""#;

    let spec = job_spec(
        "badcreds",
        echo,
        &inline_inputs(1),
        &format!("{{s3: {{bucket: {BUCKET}, prefix: x}}}}"),
    );
    let view = run_to_end(&api, spec).await;
    assert_eq!(view.state, JobState::Failed, "{view:?}");
    let reasons = view.shards[0].reasons.join("\n");
    assert!(
        reasons.contains("InvalidAccessKeyId") || reasons.contains("AccessDenied"),
        "the reason should say the credentials were refused: {reasons}"
    );
    assert!(reasons.contains("publishing to s3"), "{reasons}");

    let spec = job_spec(
        "notallowed",
        echo,
        &inline_inputs(1),
        "{s3: {bucket: private-data, prefix: x}}",
    );
    let view = run_to_end(&api, spec).await;
    let reasons = declined_reasons(&view);
    assert!(
        reasons.contains("s3://private-data/x/") && reasons.contains("publishers.s3.allow"),
        "the decline should name the target and the setting: {reasons}"
    );
    // The same reason is in `shoal job describe` output.
    let out = shoal(&api)
        .args(["job", "describe", &view.id])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("publishers.s3.allow"), "{text}");
    net.stop().await.unwrap();
    strict.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_over_an_s3_prefix_processes_every_object_once_and_never_leaks_the_secret() {
    let server = moto(&[]).await;
    let direct = local_s3::client(&server.endpoint).await;
    local_s3::create_bucket(&direct, BUCKET).await.unwrap();
    let mut expected = BTreeMap::new();
    for i in 0..12 {
        let key = format!("data/part-{i:02}.txt");
        let body = format!("object {i} {}\n", "x".repeat(i));
        direct
            .put_object()
            .bucket(BUCKET)
            .key(&key)
            .body(body.clone().into_bytes().into())
            .send()
            .await
            .unwrap();
        expected.insert(format!("part-{i:02}.txt"), body);
    }
    // A stray object outside the prefix must not be read.
    direct
        .put_object()
        .bucket(BUCKET)
        .key("other/skip.txt")
        .body(b"no".to_vec().into())
        .send()
        .await
        .unwrap();

    let mut options = options(&server.endpoint, BUCKET);
    // Chatty logs, so a leak would have every chance to show.
    options.node_env = Box::new(|_| {
        vec![(
            "RUST_LOG".to_string(),
            "debug,libp2p=info,yamux=info,multistream_select=info".to_string(),
        )]
    });
    let mut net = Testnet::start(3, options).await.unwrap();
    let api = net.start_requester(&[]).await.unwrap();
    let http = reqwest::Client::new();
    // Each shard copies its inputs to its output, one line per file.
    let script = r#"for f in "$SHOAL_INPUTS"/*; do cp "$f" "$SHOAL_OUTPUT/"; done"#;
    let inputs = format!(
        "{{s3: {{bucket: {BUCKET}, prefix: data/, endpoint_url: \"{}\"}}}}",
        server.endpoint
    );
    let spec = job_spec(
        "s3-inputs",
        script,
        &inputs,
        &format!("{{s3: {{bucket: {BUCKET}, prefix: \"results/{{job}}/{{shard}}\"}}}}"),
    )
    .replace("batch_size: 1", "batch_size: 2");
    let job = post_job(&http, &api, spec).await.unwrap();
    assert_eq!(job.shards.len(), 6);
    let view = wait_for_job(&http, &api, &job.id, Duration::from_secs(120))
        .await
        .unwrap();
    assert_eq!(view.state, JobState::Completed, "{view:?}");

    // `shoal get` the whole job: every shard verified; every object once.
    let out = tempfile::tempdir().unwrap();
    let cli = shoal(&api)
        .args(["get", &job.id, "-o"])
        .arg(out.path())
        .args(["--s3-endpoint", &server.endpoint])
        .envs(local_s3::env())
        .output()
        .unwrap();
    let get_text = String::from_utf8_lossy(&cli.stdout).into_owned();
    assert!(
        cli.status.success(),
        "{get_text}{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    assert!(get_text.contains("6 of 6 shards verified"), "{get_text}");
    let mut seen = BTreeMap::new();
    for file in files_under(out.path()) {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let body = std::fs::read_to_string(&file).unwrap();
        assert!(
            seen.insert(name.clone(), body).is_none(),
            "{name} processed twice"
        );
    }
    assert_eq!(seen, expected);

    // The secret is nowhere: logs, describe, manifest, node status, the
    // requester's job store, the published manifests.
    let secret = local_s3::SECRET_ACCESS_KEY;
    let mut haystacks: Vec<(String, Vec<u8>)> = Vec::new();
    haystacks.push((
        "describe".into(),
        serde_json::to_vec(&describe(&api, &job.id).await).unwrap(),
    ));
    haystacks.push((
        "manifest".into(),
        serde_json::to_vec(&manifest(&api, &job.id).await).unwrap(),
    ));
    haystacks.push(("get output".into(), cli.stdout.clone()));
    haystacks.push(("get errors".into(), cli.stderr.clone()));
    for node in &net.nodes {
        let status = reqwest::get(node.status_url())
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        haystacks.push((format!("{} status", node.name), status.to_vec()));
    }
    let nodes = reqwest::get(format!("{api}/nodes"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    haystacks.push(("nodes".into(), nodes.to_vec()));
    for file in files_under(net.root()) {
        let name = file.display().to_string();
        // Node homes hold config (no secrets: they come from the
        // environment), logs, identity keys, the requester's redb store.
        if let Ok(data) = std::fs::read(&file) {
            haystacks.push((name, data));
        }
    }
    for object in s3::list_objects(&direct, BUCKET, "results/").await.unwrap() {
        haystacks.push((
            object.key.clone(),
            get_object(&direct, BUCKET, &object.key).await,
        ));
    }
    let mut log_bytes = 0;
    for (name, data) in &haystacks {
        if name.ends_with(".log") {
            log_bytes += data.len();
        }
        assert!(
            !data.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the secret access key appears in {name}"
        );
    }
    assert!(
        log_bytes > 10_000,
        "the logs were expected to say something"
    );
    net.stop().await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nodes_decline_s3_inputs_outside_their_read_list() {
    let server = moto(&[]).await;
    let direct = local_s3::client(&server.endpoint).await;
    local_s3::create_bucket(&direct, BUCKET).await.unwrap();
    direct
        .put_object()
        .bucket(BUCKET)
        .key("private/a.txt")
        .body(b"secret stuff".to_vec().into())
        .send()
        .await
        .unwrap();
    let mut options = options(&server.endpoint, BUCKET);
    let endpoint = server.endpoint.clone();
    options.configure = Box::new(move |_, config| {
        local_s3::configure_node(config, &endpoint, BUCKET);
        config.publishers.s3.read = vec![format!("{BUCKET}/public/")];
    });
    let mut net = Testnet::start(2, options).await.unwrap();
    let api = net.start_requester(&[]).await.unwrap();
    let inputs = format!(
        "{{s3: {{bucket: {BUCKET}, prefix: private/, endpoint_url: \"{}\"}}}}",
        server.endpoint
    );
    let spec = job_spec(
        "read-denied",
        r#"cp "$SHOAL_INPUTS"/* "$SHOAL_OUTPUT/""#,
        &inputs,
        &format!("{{s3: {{bucket: {BUCKET}, prefix: \"out/{{shard}}\"}}}}"),
    );
    let view = run_to_end(&api, spec).await;
    let reasons = declined_reasons(&view);
    assert!(
        reasons.contains("publishers.s3.read") && reasons.contains("private/a.txt"),
        "the decline should name the object and the setting: {reasons}"
    );
    net.stop().await.unwrap();
    server.stop().await;
}

/// The `shoal` CLI, pointed at `api`.
fn shoal(api: &str) -> std::process::Command {
    shoal_cli(Path::new(env!("CARGO_BIN_EXE_shoal-testnet")), api)
}

/// Submits `spec` and waits (2 minutes at most) for the job to end.
async fn run_to_end(api: &str, spec: String) -> JobView {
    let http = reqwest::Client::new();
    let job = post_job(&http, api, spec).await.unwrap();
    wait_for_job(&http, api, &job.id, Duration::from_secs(120))
        .await
        .unwrap()
}

/// The reasons given for a one-shard job that failed without any node
/// taking the shard.
fn declined_reasons(view: &JobView) -> String {
    assert_eq!(view.state, JobState::Failed, "{view:?}");
    assert_eq!(view.shards[0].attempts, 0, "no node should have taken it");
    view.shards[0].reasons.join("\n")
}
