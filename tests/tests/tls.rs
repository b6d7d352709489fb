#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion
//! TLS on the agent-hub link, through the real binaries on loopback: a hub
//! certificate made by `ferry-hub tls init` and trusted by pin or as a CA,
//! mutual TLS, and every way of getting it wrong failing without a byte of
//! plaintext after it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ferry_tests::daemon::Daemon;
use ferry_tests::http::request_tls;
use ferry_tests::tree::{assert_same, describe};
use ferry_tests::{Hub, Site, bin, check, copy_tree, quick_dataset};

/// A certificate and key from `ferry-hub tls init`, and its pin.
struct Cert {
    cert: PathBuf,
    key: PathBuf,
    pin: String,
}

fn ferry_hub(args: &[&str]) -> Output {
    Command::new(bin("ferry-hub"))
        .args(args)
        .output()
        .expect("run ferry-hub")
}

fn tls_init(dir: &Path, name: &str, names: &[&str]) -> Cert {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    let mut args = vec!["--json", "tls", "init"];
    for n in names {
        args.extend(["--name", n]);
    }
    args.extend([
        "--cert-file",
        cert.to_str().unwrap(),
        "--key-file",
        key.to_str().unwrap(),
    ]);
    let out: serde_json::Value =
        serde_json::from_str(&check(&ferry_hub(&args), "tls init")).unwrap();
    let pin = out["pin"].as_str().unwrap().to_owned();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the key is private");
    // `tls pin` reads the same pin back from the certificate.
    let again = check(
        &ferry_hub(&["tls", "pin", "--cert-file", cert.to_str().unwrap()]),
        "tls pin",
    );
    assert_eq!(again.trim(), pin);
    Cert { cert, key, pin }
}

fn hub_tls(cert: &Cert, client_ca: Option<&Path>) -> String {
    let mut t = format!(
        "[tls]\ncert-file = \"{}\"\nkey-file = \"{}\"\n",
        cert.cert.display(),
        cert.key.display()
    );
    if let Some(ca) = client_ca {
        t.push_str(&format!("client-ca-file = \"{}\"\n", ca.display()));
    }
    t
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The command failed, and its error says `what`.
fn fails_saying(out: &Output, what: &str) {
    assert!(!out.status.success(), "it succeeded: {}", stderr(out));
    assert!(stderr(out).contains(what), "{}", stderr(out));
}

/// The snapshots the hub holds for the site's bucket, as the agent lists them.
fn snapshot_count(site: &Site) -> usize {
    let out = check(&site.agent(&["--json", "snapshots"]), "snapshots");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v.as_array().map_or(0, Vec::len)
}

#[test]
fn a_tls_hub_with_a_pinned_certificate_backs_up_and_restores_and_a_wrong_pin_fails() {
    let work = tempfile::tempdir().unwrap();
    let cert = tls_init(work.path(), "hub", &["127.0.0.1"]);
    let hub = Hub::start_in(&work.path().join("hub"), &hub_tls(&cert, None), None);
    let src = work.path().join("src");
    copy_tree(&quick_dataset(), &src);
    let site = Site::create(&hub, &work.path().join("site"), &src, "site-a", "docs");
    let pinned = format!("[tls]\npin = \"{}\"\n", cert.pin);
    site.write_config_with(&hub.https_url(), &src, &pinned);

    let report = site.backup();
    assert!(report["files"].as_u64().unwrap() > 0, "{report}");
    let out = work.path().join("restored");
    site.restore(&out, &[]);
    assert_same(&describe(&src), &describe(&out), "restored over TLS");

    // Another certificate's pin: refused in the handshake, both pins named.
    let other = tls_init(work.path(), "other", &["127.0.0.1"]);
    site.write_config_with(
        &hub.https_url(),
        &src,
        &format!("[tls]\npin = \"{}\"\n", other.pin),
    );
    let failed = site.agent(&["backup"]);
    let err = stderr(&failed);
    assert!(!failed.status.success(), "a wrong pin was accepted");
    assert!(
        err.contains(&cert.pin) && err.contains(&other.pin),
        "the error names the pinned and the presented certificate: {err}"
    );

    // Plaintext to the TLS hub: nothing is served.
    site.write_config(&hub.url(), &src);
    let failed = site.agent(&["backup"]);
    assert!(!failed.status.success(), "plaintext reached a TLS hub");

    // https:// with no [tls] is an error, never a silent downgrade.
    site.write_config(&hub.https_url(), &src);
    let failed = site.agent(&["backup"]);
    fails_saying(&failed, "no [tls] table");

    site.write_config_with(&hub.https_url(), &src, &pinned);
    assert_eq!(
        snapshot_count(&site),
        1,
        "only the pinned backup was stored"
    );
    assert!(
        hub.log().contains("TLS handshake failed"),
        "the hub logs the refused handshakes"
    );
}

#[test]
fn an_https_address_against_a_plaintext_hub_fails() {
    let work = tempfile::tempdir().unwrap();
    let hub = Hub::start(&work.path().join("hub"));
    let cert = tls_init(work.path(), "hub", &["127.0.0.1"]);
    let src = work.path().join("src");
    copy_tree(&quick_dataset(), &src);
    let site = Site::create(&hub, &work.path().join("site"), &src, "site-a", "docs");
    site.write_config_with(
        &hub.https_url(),
        &src,
        &format!("[tls]\npin = \"{}\"\n", cert.pin),
    );
    // Never served over plaintext: the handshake fails.
    fails_saying(&site.agent(&["backup"]), "cannot connect to the hub");
    site.write_config(&hub.url(), &src);
    assert_eq!(snapshot_count(&site), 0);
}

#[test]
fn mutual_tls_needs_the_sites_certificate_beside_its_token() {
    let work = tempfile::tempdir().unwrap();
    // The hub's certificate doubles as the CA the agent trusts; the site's
    // own self-signed certificate is the CA the hub takes clients from.
    let hub_cert = tls_init(work.path(), "hub", &["localhost"]);
    let site_cert = tls_init(work.path(), "site-a", &["site-a"]);
    let stranger = tls_init(work.path(), "stranger", &["site-a"]);
    let hub = Hub::start_in(
        &work.path().join("hub"),
        &hub_tls(&hub_cert, Some(&site_cert.cert)),
        None,
    );
    let src = work.path().join("src");
    copy_tree(&quick_dataset(), &src);
    let site = Site::create(&hub, &work.path().join("site"), &src, "site-a", "docs");
    let tls = |client: Option<&Cert>| {
        let mut t = format!(
            "[tls]\nca-file = \"{}\"\nserver-name = \"localhost\"\n",
            hub_cert.cert.display()
        );
        if let Some(c) = client {
            t.push_str(&format!(
                "cert-file = \"{}\"\nkey-file = \"{}\"\n",
                c.cert.display(),
                c.key.display()
            ));
        }
        t
    };
    site.write_config_with(&hub.https_url(), &src, &tls(Some(&site_cert)));
    site.backup();
    assert_eq!(snapshot_count(&site), 1);

    for client in [None, Some(&stranger)] {
        site.write_config_with(&hub.https_url(), &src, &tls(client));
        let failed = site.agent(&["backup"]);
        assert!(
            !failed.status.success(),
            "a client without the site's certificate was served"
        );
    }

    // Trusted as a CA, the certificate must also name the host dialled.
    site.write_config_with(
        &hub.https_url(),
        &src,
        &format!(
            "[tls]\nca-file = \"{}\"\ncert-file = \"{}\"\nkey-file = \"{}\"\n",
            hub_cert.cert.display(),
            site_cert.cert.display(),
            site_cert.key.display()
        ),
    );
    let failed = site.agent(&["backup"]);
    fails_saying(&failed, "not valid for name");
}

#[test]
fn a_hub_refuses_plaintext_off_loopback_unless_told() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("hub");
    // A documentation address (RFC 5737): the check comes before the bind.
    let out = ferry_hub(&[
        "--data-dir",
        data.to_str().unwrap(),
        "serve",
        "--listen",
        "192.0.2.1:7420",
    ]);
    fails_saying(&out, "refusing to serve plaintext gRPC on 192.0.2.1:7420");
    assert!(!data.exists(), "nothing was created before the refusal");

    // Told, it goes as far as the bind (which fails: not this host's address).
    let config = work.path().join("hub.toml");
    std::fs::write(&config, "insecure-plaintext = true\n").unwrap();
    let out = ferry_hub(&[
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "serve",
        "--listen",
        "192.0.2.1:7420",
    ]);
    fails_saying(&out, "binding 192.0.2.1:7420");
}

#[test]
fn the_webhook_serves_tls_when_given_a_certificate() {
    let work = tempfile::tempdir().unwrap();
    let hub = Hub::start(&work.path().join("hub"));
    let cert = tls_init(work.path(), "webhook", &["webhook.test"]);
    let src = work.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let site = Site::create(&hub, &work.path().join("site"), &src, "site-a", "docs");
    ferry_tests::write_secret(&site.dir.join("webhook.token"), "hook-token\n");
    let webhook = format!(
        "[webhook]\nlisten = \"127.0.0.1:0\"\ntoken-file = \"webhook.token\"\ncert-file = \"{}\"\nkey-file = \"{}\"\n",
        cert.cert.display(),
        cert.key.display()
    );
    site.write_config_with(&hub.url(), &src, &webhook);
    let daemon = Daemon::start(&site.config, &site.dir);
    let probe = request_tls(&daemon.addr, &cert.pin, "GET", "/", None, b"").unwrap();
    assert_eq!(probe.status, 200);
    // The token is still asked for, inside TLS.
    let anonymous = request_tls(&daemon.addr, &cert.pin, "POST", "/", None, b"{}").unwrap();
    assert_eq!(anonymous.status, 401);
    // Another pin: the sender refuses the webhook.
    let other = tls_init(work.path(), "other", &["webhook.test"]);
    assert!(request_tls(&daemon.addr, &other.pin, "GET", "/", None, b"").is_err());
    // Plaintext HTTP gets no answer from a TLS webhook.
    let mut plain = std::net::TcpStream::connect(&daemon.addr).unwrap();
    plain
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    use std::io::{Read, Write};
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(
        !String::from_utf8_lossy(&answer).contains("200 OK"),
        "a TLS webhook answered plaintext"
    );

    // Off loopback, a webhook without a token or without TLS is refused.
    for (table, field) in [
        ("listen = \"192.0.2.1:9120\"\n", "webhook.token-file"),
        (
            "listen = \"192.0.2.1:9120\"\ntoken-file = \"webhook.token\"\n",
            "webhook.cert-file",
        ),
    ] {
        site.write_config_with(&hub.url(), &src, &format!("[webhook]\n{table}"));
        fails_saying(&site.agent(&["run"]), field);
    }
}
