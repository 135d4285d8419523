//! The request floor of an S3 server, for `benches/s3.sh`: what a plain client (the
//! `object_store` crate alone, no cache logic) takes to make the requests a build or a verify of
//! small paths makes. Each argument is a round of requests `OP:COUNT:SIZE` (OP `put`, `cput`: a
//! create-if-absent put, as a build commits its NARs and narinfos, or `get`;
//! SIZE in bytes, of the objects put and later got), all made `CONCURRENCY` at a time, rounds one
//! after another; prints the wall time of each round and of all. OP `upload` is the floor of a
//! large NAR: COUNT objects of SIZE bytes, one after another, each a multipart upload of 8 MiB
//! parts (as a build makes them), CONCURRENCY parts in flight, the bytes made as they go
//! (memory: the parts in flight).
//!
//! The server and keys come from the environment `scripts/s3-server.sh` writes (`s3.env`:
//! `NAR_TOOL_S3_ENDPOINT`, `NAR_TOOL_S3_BUCKET`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`).
//!
//! `cargo run --release --example s3_floor -- PREFIX CONCURRENCY put:500:4600 put:500:400 get:500:4600`
//! `cargo run --release --example s3_floor -- PREFIX 3 upload:1:1073741824`

use std::sync::Arc;
use std::time::Instant;

use futures_util::stream::FuturesUnordered;
use futures_util::{stream, StreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        eprintln!("s3_floor: {name} is not set (source the s3.env of scripts/s3-server.sh)");
        std::process::exit(2)
    })
}

/// The part size of the `upload` rounds (nar-tool's default).
const PART: usize = 8 << 20;

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Put,
    /// A create-if-absent put (`If-None-Match: *`), as a build commits NARs and narinfos.
    CreatePut,
    Get,
    Upload,
}

struct Round {
    op: Op,
    count: usize,
    size: usize,
}

fn parse_round(arg: &str) -> Option<Round> {
    let mut it = arg.split(':');
    let op = match it.next()? {
        "put" => Op::Put,
        "cput" => Op::CreatePut,
        "get" => Op::Get,
        "upload" => Op::Upload,
        _ => return None,
    };
    let count = it.next()?.parse().ok()?;
    let size = it.next()?.parse().ok()?;
    Some(Round { op, count, size })
}

/// One object of `size` bytes as a multipart upload, `in_flight` parts at once; every part is
/// `part` (pseudo-random bytes, shared), the last one cut to fit.
async fn upload(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    size: usize,
    in_flight: usize,
    part: &bytes::Bytes,
) -> object_store::Result<()> {
    let mut upload = store.put_multipart(path).await?;
    let mut pending = FuturesUnordered::new();
    let mut sent = 0;
    while sent < size || (size == 0 && sent == 0) {
        let n = PART.min(size - sent);
        pending.push(upload.put_part(PutPayload::from(part.slice(..n))));
        sent += n.max(1);
        while pending.len() >= in_flight.max(1) {
            pending.next().await.expect("one is pending")?;
        }
    }
    while let Some(done) = pending.next().await {
        done?;
    }
    upload.complete().await.map(drop)
}

/// A part's worth of bytes that no server compresses (xorshift).
fn random_part() -> bytes::Bytes {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(PART);
    while out.len() < PART {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    bytes::Bytes::from(out)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = || -> ! {
        eprintln!("usage: s3_floor PREFIX CONCURRENCY (put|cput|get|upload):COUNT:SIZE...");
        std::process::exit(2)
    };
    if args.len() < 3 {
        usage();
    }
    let prefix = args[0].clone();
    let concurrency: usize = args[1].parse().unwrap_or_else(|_| usage());
    let rounds: Vec<Round> = args[2..]
        .iter()
        .map(|a| parse_round(a).unwrap_or_else(|| usage()))
        .collect();
    let store: Arc<dyn ObjectStore> = Arc::new(
        AmazonS3Builder::new()
            .with_endpoint(env("NAR_TOOL_S3_ENDPOINT"))
            .with_bucket_name(env("NAR_TOOL_S3_BUCKET"))
            .with_access_key_id(env("AWS_ACCESS_KEY_ID"))
            .with_secret_access_key(env("AWS_SECRET_ACCESS_KEY"))
            .with_region("us-east-1")
            .with_allow_http(true)
            .with_client_options(
                object_store::ClientOptions::new()
                    .with_allow_http(true)
                    .with_pool_max_idle_per_host(concurrency),
            )
            .build()
            .unwrap_or_else(|e| {
                eprintln!("s3_floor: {e}");
                std::process::exit(1)
            }),
    );
    let part = random_part();
    let all = Instant::now();
    let mut requests = 0;
    for round in &rounds {
        let started = Instant::now();
        let size = round.size;
        if round.op == Op::Upload {
            for i in 0..round.count {
                let path = Path::from(format!("{prefix}/upload-{size}/{i}"));
                if let Err(e) = upload(&store, &path, size, concurrency, &part).await {
                    eprintln!("s3_floor: {e}");
                    std::process::exit(1);
                }
            }
            requests += round.count * (size.div_ceil(PART).max(1) + 2);
            println!(
                "upload {} x {size} B: {:.3} s",
                round.count,
                started.elapsed().as_secs_f64()
            );
            continue;
        }
        let results: Vec<object_store::Result<()>> = stream::iter(0..round.count)
            .map(|i| {
                let store = store.clone();
                let path = Path::from(format!("{prefix}/{size}/{i}"));
                let op = round.op;
                async move {
                    let body = || PutPayload::from(vec![(i % 251) as u8; size]);
                    if op == Op::Put {
                        store.put(&path, body()).await.map(drop)
                    } else if op == Op::CreatePut {
                        let create = PutOptions::from(PutMode::Create);
                        store.put_opts(&path, body(), create).await.map(drop)
                    } else {
                        store.get(&path).await?.bytes().await.map(drop)
                    }
                }
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        if let Some(e) = results.into_iter().find_map(Result::err) {
            eprintln!("s3_floor: {e}");
            std::process::exit(1);
        }
        requests += round.count;
        println!(
            "{} {} x {size} B: {:.3} s",
            match round.op {
                Op::Put => "put",
                Op::CreatePut => "cput",
                _ => "get",
            },
            round.count,
            started.elapsed().as_secs_f64()
        );
    }
    println!(
        "total: {requests} requests, {:.3} s at {concurrency} at a time",
        all.elapsed().as_secs_f64()
    );
}
