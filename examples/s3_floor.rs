//! The request floor of an S3 server, for `benches/s3.sh`: what a plain client (the
//! `object_store` crate alone, no cache logic) takes to make the requests a build or a verify of
//! small paths makes. Each argument is a round of requests `OP:COUNT:SIZE` (OP `put` or `get`;
//! SIZE in bytes, of the objects put and later got), all made `CONCURRENCY` at a time, rounds one
//! after another; prints the wall time of each round and of all.
//!
//! The server and keys come from the environment `scripts/s3-server.sh` writes (`s3.env`:
//! `NAR_TOOL_S3_ENDPOINT`, `NAR_TOOL_S3_BUCKET`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`).
//!
//! `cargo run --release --example s3_floor -- PREFIX CONCURRENCY put:500:4600 put:500:400 get:500:4600`

use std::sync::Arc;
use std::time::Instant;

use futures_util::{stream, StreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        eprintln!("s3_floor: {name} is not set (source the s3.env of scripts/s3-server.sh)");
        std::process::exit(2)
    })
}

struct Round {
    put: bool,
    count: usize,
    size: usize,
}

fn parse_round(arg: &str) -> Option<Round> {
    let mut it = arg.split(':');
    let put = match it.next()? {
        "put" => true,
        "get" => false,
        _ => return None,
    };
    let count = it.next()?.parse().ok()?;
    let size = it.next()?.parse().ok()?;
    Some(Round { put, count, size })
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = || -> ! {
        eprintln!("usage: s3_floor PREFIX CONCURRENCY (put|get):COUNT:SIZE...");
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
    let all = Instant::now();
    let mut requests = 0;
    for round in &rounds {
        let started = Instant::now();
        let size = round.size;
        let results: Vec<object_store::Result<()>> = stream::iter(0..round.count)
            .map(|i| {
                let store = store.clone();
                let path = Path::from(format!("{prefix}/{size}/{i}"));
                let put = round.put;
                async move {
                    if put {
                        let body = vec![(i % 251) as u8; size];
                        store.put(&path, PutPayload::from(body)).await.map(drop)
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
            if round.put { "put" } else { "get" },
            round.count,
            started.elapsed().as_secs_f64()
        );
    }
    println!(
        "total: {requests} requests, {:.3} s at {concurrency} at a time",
        all.elapsed().as_secs_f64()
    );
}
