//! NARs uploaded straight to their key on a bucket (their file hash known before the upload):
//! no staged object and no copy on the server; a NAR there already is kept (or replaced when it
//! does not check out); an upload cut by a killed build is aborted by the rerun, which
//! completes the cache. Against the real S3 server of `common::s3`.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read};
use std::path::Path;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nar_tool::cache::layout::{CacheKey, KeyDir};
use nar_tool::cache::storage::{Staged, StorageRead, StorageWrite};
use nar_tool::compression::Compression;
use nar_tool::hash::{to_hex, Hash, HashAlgo};
use nar_tool::host::build::{build_cache_into, BuildOptions, BuildSummary, MetadataSource};
use nar_tool::host::fs::{dump_path, CaseHack};
use nar_tool::host::object::ObjectStorage;
use nar_tool::nixbase32;
use object_store::multipart::MultipartStore;

use crate::common::s3::server;
use crate::common::*;

/// A bucket that counts how its NARs are staged: [`StorageWrite::stage`] (to a staging key,
/// then copied) or [`StorageWrite::stage_at`] (straight to the key).
struct Counting {
    inner: ObjectStorage,
    calls: Mutex<HashMap<&'static str, usize>>,
}

impl Counting {
    fn new(inner: ObjectStorage) -> Counting {
        Counting {
            inner,
            calls: Mutex::default(),
        }
    }

    /// The calls counted since the last take.
    fn take(&self) -> HashMap<&'static str, usize> {
        std::mem::take(&mut self.calls.lock().unwrap())
    }

    fn inner(&self) -> &ObjectStorage {
        &self.inner
    }

    fn count(&self, what: &'static str) {
        *self.calls.lock().unwrap().entry(what).or_default() += 1;
    }
}

impl StorageRead for Counting {
    nar_tool::forward_storage!(Counting::inner =>
        describe, locate, stat, open, list, read_small, requests_in_flight);
}

impl StorageWrite for Counting {
    nar_tool::forward_storage!(Counting::inner =>
        prepare, writes_in_place, put_if_absent, put, replace_if_unchanged, delete, barrier, lock,
        gc_batch_lock, lease, live_leases, gc_roots);
    fn stage(&self, dir: KeyDir) -> io::Result<Box<dyn Staged>> {
        if dir == KeyDir::Nar {
            self.count("stage nar/");
        }
        self.inner.stage(dir)
    }
    fn stage_at(&self, key: &CacheKey) -> io::Result<Box<dyn Staged>> {
        self.count("stage_at");
        self.inner.stage_at(key)
    }
}

/// A store of one path holding `mib` MiB (bytes no compressor shrinks much), its NAR hash.
fn one_big_path(tag: &str, mib: usize) -> (TempTree, String, Hash) {
    let root = TempTree::new();
    let h = Hash::of(HashAlgo::Sha256, format!("s3 direct {tag}").as_bytes());
    let path = format!(
        "/nix/store/{}-s3-direct-{tag}",
        nixbase32::encode(&h.digest()[..20])
    );
    let physical = root.path().join(path.trim_start_matches('/'));
    fs::create_dir_all(&physical).unwrap();
    let seed = tag.len() as u32;
    let data: Vec<u8> = (0..(mib as u32) << 20)
        .map(|i| (i.wrapping_add(seed).wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(physical.join("data"), data).unwrap();
    let nar = dump_path(&physical, Vec::new(), CaseHack(false)).unwrap();
    let nar_hash = Hash::of(HashAlgo::Sha256, &nar);
    let registration = format!(
        "{path}\n{}\n{}\n\n0\n",
        to_hex(nar_hash.digest()),
        nar.len()
    );
    fs::write(root.path().join("registration"), registration).unwrap();
    (root, path, nar_hash)
}

fn options(root: &Path, path: &str, metadata: MetadataSource, c: Compression) -> BuildOptions {
    BuildOptions {
        compression: c,
        priority: 40,
        ..build_options(root.join("unused"), root, metadata, [path])
    }
}

fn build(storage: &Counting, opts: &BuildOptions) -> BuildSummary {
    build_cache_into(storage, opts, |_| {}).unwrap()
}

/// The names under the prefix, this tool's owner records left out.
fn left(storage: &ObjectStorage) -> Vec<String> {
    storage
        .list_everything()
        .unwrap()
        .into_iter()
        .filter(|n| !n.starts_with(".nar-tool/owners/") && !n.starts_with(".nar-tool/leases/"))
        .collect()
}

fn sha256_of(storage: &ObjectStorage, key: &CacheKey) -> Hash {
    let mut body = Vec::new();
    storage
        .open(key)
        .unwrap()
        .unwrap()
        .body
        .read_to_end(&mut body)
        .unwrap();
    Hash::of(HashAlgo::Sha256, &body)
}

#[test]
fn an_uncompressed_nar_goes_straight_to_its_key_and_one_there_is_kept_or_replaced() {
    let srv = server();
    let (root, path, nar_hash) = one_big_path("straight", 40);
    let prefix = srv.fresh_prefix("direct");
    let storage = Counting::new(srv.storage(&prefix));
    let nar_key =
        CacheKey::parse(&format!("nar/{}.nar", nixbase32::encode(nar_hash.digest()))).unwrap();
    let narinfo = CacheKey::parse(&format!("{}.narinfo", &path[11..43])).unwrap();
    // Scanning, the metadata gives no NAR hash: the NAR is hashed in a pass of its own first.
    for (round, metadata) in [
        MetadataSource::Scan,
        MetadataSource::Registration(root.path().join("registration")),
    ]
    .into_iter()
    .enumerate()
    {
        let opts = options(root.path(), &path, metadata, Compression::None);
        let summary = build(&storage, &opts);
        assert_eq!(summary.written, 1, "round {round}");
        let calls = storage.take();
        assert_eq!(calls.get("stage_at"), Some(&1), "round {round}: {calls:?}");
        assert_eq!(calls.get("stage nar/"), None, "round {round}: {calls:?}");
        let mut names = left(&storage.inner);
        names.retain(|n| n != "nix-cache-info");
        assert_eq!(
            names,
            vec![nar_key.to_string(), narinfo.to_string()],
            "round {round}: the NAR at its key, no staged object, no upload record"
        );
        assert_eq!(sha256_of(&storage.inner, &nar_key), nar_hash);
        storage.inner.delete(&narinfo).unwrap();
        storage.inner.delete(&nar_key).unwrap();
    }
    let opts = options(
        root.path(),
        &path,
        MetadataSource::Registration(root.path().join("registration")),
        Compression::None,
    );
    build(&storage, &opts);
    storage.take();
    storage.inner.delete(&narinfo).unwrap();

    // The NAR there already checks out: kept, nothing uploaded.
    let summary = build(&storage, &opts);
    assert_eq!(summary.deduplicated, 1, "reused");
    let calls = storage.take();
    assert!(calls.is_empty(), "nothing staged: {calls:?}");

    // One of the same size that does not check out: replaced, by an upload straight to its key.
    let size = storage.inner.stat(&nar_key).unwrap().unwrap().size;
    storage.inner.delete(&narinfo).unwrap();
    storage
        .inner
        .put_raw(&nar_key.to_string(), &vec![7u8; size as usize])
        .unwrap();
    let summary = build(&storage, &opts);
    assert_eq!((summary.written, summary.deduplicated), (1, 0));
    assert_eq!(storage.take().get("stage_at"), Some(&1));
    assert_eq!(sha256_of(&storage.inner, &nar_key), nar_hash, "replaced");

    // Compressed, the key is known only at the end: staged, then copied.
    let prefix = srv.fresh_prefix("direct-zstd");
    let storage = Counting::new(srv.storage(&prefix));
    let opts = options(
        root.path(),
        &path,
        MetadataSource::Registration(root.path().join("registration")),
        Compression::Zstd,
    );
    build(&storage, &opts);
    let calls = storage.take();
    assert_eq!(calls.get("stage nar/"), Some(&1), "{calls:?}");
}

#[test]
fn a_direct_upload_cut_by_a_kill_is_aborted_by_the_rerun_which_completes() {
    let srv = server();
    let (root, path, _) = one_big_path("killed", 96);
    let prefix = srv.fresh_prefix("direct-kill");
    let url = srv.url(&prefix);
    let storage = srv.storage(&prefix);
    let build = || {
        let mut cmd = srv.command();
        cmd.args(["build-cache", "--quiet", "--to", &url])
            .args(["--store-root", &root.path().display().to_string()])
            .arg("--registration")
            .arg(root.path().join("registration"))
            .args(["--compression", "none", "--sign"])
            .arg(corpus().join("keys/secret"))
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    };
    let mut child = build().spawn().unwrap();
    // Killed once its upload to the NAR's key is recorded (the record names the key).
    let deadline = Instant::now() + Duration::from_secs(120);
    let record = loop {
        let found = storage
            .list_everything()
            .unwrap()
            .into_iter()
            .find(|n| n.starts_with(".nar-tool/uploads/"));
        if let Some(record) = found {
            let _ = child.kill();
            break record;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the build ended before it could be killed mid-upload"
        );
        assert!(Instant::now() < deadline, "no upload was recorded");
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = child.wait();
    let raw = raw_bucket(srv);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let record = object_store::path::Path::from(format!("{prefix}/{record}"));
    let text = runtime
        .block_on(async {
            use object_store::ObjectStoreExt;
            raw.get(&record).await?.bytes().await
        })
        .expect("the killed build's record stays");
    let text = String::from_utf8(text.to_vec()).unwrap();
    let (target, id) = text.trim_end().split_once('\n').unwrap();
    assert!(
        target.starts_with(&format!("{prefix}/nar/")),
        "the upload went straight to the NAR's key: {text}"
    );
    let names = storage.list_everything().unwrap();
    assert!(
        !names.iter().any(|n| n.starts_with("nar/")),
        "an upload not completed shows nothing: {names:?}"
    );
    let target = object_store::path::Path::from(target);
    let id = id.to_string();
    let part = |n: usize| runtime.block_on(raw.put_part(&target, &id, n, vec![1u8; 16].into()));
    part(9000).expect("the cut upload is still open before the rerun");

    let out = build().output().unwrap();
    assert!(
        out.status.success(),
        "the rerun: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(part(9001).is_err(), "the rerun aborted the cut upload");
    let names = storage.list_everything().unwrap();
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with(".nar-tool/uploads/") || n.starts_with(".nar-tool/staging/")),
        "nothing left of the cut upload: {names:?}"
    );
    let verified = srv
        .command()
        .args(["verify", &url, "--quiet", "--trusted-key", &public_key()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stdout)
    );
}

/// The test bucket through `object_store` alone (to poke at a multipart upload by its id).
fn raw_bucket(srv: &crate::common::s3::S3Server) -> object_store::aws::AmazonS3 {
    object_store::aws::AmazonS3Builder::new()
        .with_endpoint(&srv.endpoint)
        .with_bucket_name(&srv.bucket)
        .with_access_key_id(&srv.key)
        .with_secret_access_key(&srv.secret)
        .with_region("us-east-1")
        .with_allow_http(true)
        .build()
        .unwrap()
}
