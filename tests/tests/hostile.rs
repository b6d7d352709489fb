#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion
//! A hub under a bounded flood from a hostile peer on another loopback
//! address: unauthenticated large requests and idle connections. The hub's
//! memory stays under a stated bound, the idle connections are capped and
//! then closed, and a legitimate backup meanwhile succeeds.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use ferry_proto::v1::CheckReferencesRequest;
use ferry_proto::v1::ingest_client::IngestClient;
use ferry_tests::tree::{assert_same, describe};
use ferry_tests::{Hub, Site, copy_tree, quick_dataset};
use tokio::io::AsyncReadExt;

/// The attacker's addresses, for idle connections and for large requests:
/// each counted apart from the other and from the agent's 127.0.0.1.
const IDLE_FROM: [u8; 4] = [127, 0, 0, 2];
const LARGE_FROM: [u8; 4] = [127, 0, 0, 3];
/// Unauthenticated requests in flight at once, each this large: without the
/// gate the hub decoded all of them (12 x 60 MiB took it to 531 MB).
const LARGE_REQUESTS: usize = 12;
const LARGE_REQUEST_BYTES: usize = 60 << 20;
/// Idle connections opened: over the per-address cap of 64.
const IDLE_CONNECTIONS: usize = 300;
/// The bound: the hub's peak resident memory through it all.
const PEAK_RSS_BOUND: u64 = 160 << 20;

async fn attacker_socket(to: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::from(IDLE_FROM), 0))?;
    socket.connect(to).await
}

/// Sends one large request without a token; returns its gRPC code.
async fn unauthenticated_large_request(url: String) -> tonic::Code {
    let channel = tonic::transport::Endpoint::from_shared(url)
        .unwrap()
        .local_address(Some(IpAddr::from(LARGE_FROM)))
        .initial_stream_window_size(8 << 20)
        .initial_connection_window_size(16 << 20)
        .connect()
        .await
        .unwrap();
    let mut client = IngestClient::new(channel).max_encoding_message_size(usize::MAX);
    let request = CheckReferencesRequest {
        session_id: 1,
        data_chunk_ids: vec![0x5a; LARGE_REQUEST_BYTES].into(),
    };
    match client.check_references(request).await {
        Ok(_) => tonic::Code::Ok,
        Err(status) => status.code(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unauthenticated_requests_and_idle_connections_leaves_the_hub_small_and_serving()
{
    let work = tempfile::tempdir().unwrap();
    // A short authentication deadline, to see idle connections closed.
    let hub = Hub::start_in(
        &work.path().join("hub"),
        "[limits]\nauth-timeout-secs = 3\n",
        None,
    );
    let addr: SocketAddr = hub.addr.parse().unwrap();
    let src = work.path().join("src");
    copy_tree(&quick_dataset(), &src);
    let site = Site::create(&hub, &work.path().join("site"), &src, "site-a", "docs");

    // Idle connections: the first 64 are held (then closed at the deadline),
    // the rest are closed at once.
    let mut idle = Vec::new();
    for _ in 0..IDLE_CONNECTIONS {
        if let Ok(s) = attacker_socket(addr).await {
            idle.push(s);
        }
    }
    let large: Vec<_> = (0..LARGE_REQUESTS)
        .map(|_| tokio::spawn(unauthenticated_large_request(hub.url())))
        .collect();

    // The legitimate backup, from 127.0.0.1, while the flood is on.
    let backup = tokio::task::spawn_blocking({
        let site_config = site.config.clone();
        move || {
            std::process::Command::new(ferry_tests::bin("ferry-agent"))
                .arg("--config")
                .arg(site_config)
                .args(["--json", "backup"])
                .output()
                .unwrap()
        }
    });
    // Each is refused: UNAUTHENTICATED, or the reset of the stream whose
    // body the hub would not read, when the client was still sending it.
    for request in large {
        assert_ne!(request.await.unwrap(), tonic::Code::Ok);
    }
    let backup = backup.await.unwrap();
    ferry_tests::check(&backup, "backup during the flood");

    // Which idle connections the hub has closed: all but 64 at once, the
    // rest at the authentication deadline.
    let started = Instant::now();
    let mut closed = 0;
    for mut s in idle.drain(..) {
        // The hub's HTTP/2 settings come first; then the close (EOF or reset).
        let mut sink = Vec::new();
        let left = Duration::from_secs(15).saturating_sub(started.elapsed());
        if let Ok(Ok(_) | Err(_)) = tokio::time::timeout(left, s.read_to_end(&mut sink)).await {
            closed += 1;
        }
    }
    assert_eq!(
        closed, IDLE_CONNECTIONS,
        "every idle connection is closed: over the cap at once, the rest at the deadline"
    );
    let peak = hub.peak_rss_bytes();
    eprintln!("hub peak RSS under the flood: {} MiB", peak >> 20);
    assert!(
        peak < PEAK_RSS_BOUND,
        "the hub peaked at {} MiB under the flood (bound {} MiB)",
        peak >> 20,
        PEAK_RSS_BOUND >> 20
    );
    let log = hub.log();
    assert!(
        log.contains("connection refused: over the connection caps"),
        "{log}"
    );
    assert!(log.contains("did not authenticate in time"), "{log}");
    assert_eq!(
        log.matches("request without a site token").count(),
        LARGE_REQUESTS,
        "every large request was refused on its headers"
    );

    let out = work.path().join("restored");
    site.restore(&out, &[]);
    assert_same(&describe(&src), &describe(&out), "restored after the flood");
}

/// The longest a backup may take to fail once its hub froze: keepalive
/// notices within 15 s (a ping every 5 s, 10 s for its answer).
const FROZEN_HUB_FAILS_WITHIN: Duration = Duration::from_secs(40);

#[test]
fn a_backup_to_a_frozen_hub_fails_within_its_deadline_and_succeeds_once_it_thaws() {
    let work = tempfile::tempdir().unwrap();
    let hub = Hub::start(&work.path().join("hub"));
    let src = work.path().join("src");
    copy_tree(&quick_dataset(), &src);
    // Enough fresh data that the backup is still uploading when the hub freezes.
    for i in 0..8 {
        std::fs::write(
            src.join(format!("bulk-{i}.bin")),
            ferry_tests::noise(16 << 20, i),
        )
        .unwrap();
    }
    let site = Site::create(&hub, &work.path().join("site"), &src, "site-a", "docs");
    let mut frozen_at = None;
    let (ok, log) = site.backup_with_fault_after_first_ack(|| {
        hub.freeze();
        frozen_at = Some(Instant::now());
    });
    let took = frozen_at.unwrap().elapsed();
    hub.thaw();
    assert!(!ok, "a backup to a frozen hub succeeded:\n{log}");
    assert!(
        took < FROZEN_HUB_FAILS_WITHIN,
        "the agent took {took:?} to give up on a frozen hub:\n{log}"
    );
    let last = log.lines().last().unwrap_or_default();
    eprintln!("frozen hub: failed after {took:?}: {last}");
    assert!(
        last.contains("lost the connection to the hub during") && last.contains("keep-alive"),
        "the error says the hub was lost and how: {last}"
    );
    // Thawed, the same backup completes; what was acknowledged is not resent.
    site.backup();
    let out = work.path().join("restored");
    site.restore(&out, &[]);
    assert_same(&describe(&src), &describe(&out), "restored after the thaw");
}
