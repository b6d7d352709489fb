//! A key holder's reports: bad copies marked missing, verified ones
//! counted for every site of the tenant.

use super::*;

/// A reported bad blob is missing for its site from then on, and uploaded
/// again on request; a report for another tenant's bucket is refused, and
/// a torn id list names its field.
#[tokio::test]
async fn reported_bad_blobs_are_missing_until_uploaded_again() {
    let mut hub = hub().await;
    let session = hub.open("alpha").await;
    let x = id(7);
    hub.upload("alpha", session, &[(x, b"alpha x")]).await;
    assert!(hub.find_missing("alpha", session, &[x]).await.is_empty());
    let report = |bucket: &str, ids: Vec<u8>| ReportBadBlobsRequest {
        bucket: bucket.to_owned(),
        ids,
    };
    let err = hub
        .journal
        .report_bad_blobs(authed("beta", report("alpha/data", x.0.to_vec())))
        .await
        .unwrap_err();
    // Another tenant's bucket is not even said to exist.
    assert_eq!(err.code(), tonic::Code::NotFound, "{err}");
    let err = hub
        .journal
        .report_bad_blobs(authed("alpha", report("alpha/data", vec![7; 33])))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert!(err.message().contains("ReportBadBlobsRequest.ids"), "{err}");
    assert!(hub.find_missing("alpha", session, &[x]).await.is_empty());

    // Reported twice in one call, the copy is marked once.
    let twice = [x.0, x.0].concat();
    let marked = hub
        .journal
        .report_bad_blobs(authed("alpha", report("alpha/data", twice)))
        .await
        .unwrap()
        .into_inner()
        .marked;
    assert_eq!(marked, 1);
    assert_eq!(hub.find_missing("alpha", session, &[x]).await, [0]);
    let ack = hub.upload("alpha", session, &[(x, b"alpha x")]).await;
    assert_eq!(ack.stored, 1, "the bad copy is replaced");
    assert!(hub.find_missing("alpha", session, &[x]).await.is_empty());
}

/// RFC 8032's first Ed25519 test key, as the tenant's verifier.
fn verifier() -> ed25519_dalek::SigningKey {
    let secret: [u8; 32] =
        hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
            .unwrap()
            .try_into()
            .unwrap();
    ed25519_dalek::SigningKey::from_bytes(&secret)
}

#[tokio::test]
async fn signed_reports_make_copies_count_for_every_site() {
    use ed25519_dalek::Signer;
    use ferry_proto::verified::{self, Copy};
    let mut hub = hub().await;
    let first = hub.open("alpha").await;
    let second = hub.open_bucket("alpha2", "alpha/data2").await;
    let x = id(7);
    hub.upload("alpha", first, &[(x, b"alpha x")]).await;
    assert_eq!(hub.commit("alpha", first, &[x]).await.unwrap(), 1);
    // The first site's copy is not the second's to dedup against.
    assert_eq!(hub.find_missing("alpha2", second, &[x]).await, [0]);
    let fetched = hub.fetch_one("alpha", "alpha/data", x).await;
    assert!(!fetched.verified);
    let copies = verified::encode_copies(&[
        Copy {
            id: x,
            site: fetched.copy_site,
        },
        // Another site's copy is not this bucket's to vouch for: ignored.
        Copy {
            id: id(8),
            site: fetched.copy_site + 1,
        },
    ]);
    let report = |copies: &[u8], signature: Vec<u8>| ReportVerifiedBlobsRequest {
        bucket: "alpha/data".into(),
        copies: copies.to_vec(),
        signature,
    };
    let signed = verifier()
        .sign(&verified::claim("alpha", &copies))
        .to_bytes()
        .to_vec();
    // No key registered: refused, nothing marked.
    let err = hub
        .journal
        .report_verified_blobs(authed("alpha", report(&copies, signed.clone())))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err}");
    let tenant = hub
        .catalog
        .read(|r| r.tenant_by_name("alpha"))
        .unwrap()
        .unwrap();
    let public = verifier().verifying_key().to_bytes();
    hub.catalog
        .write(|w| w.set_tenant_verifier(tenant.id, Some(&public)))
        .unwrap();
    // Signed by another key, or for another tenant: refused.
    let forged = ed25519_dalek::SigningKey::from_bytes(&[5; 32])
        .sign(&verified::claim("alpha", &copies))
        .to_bytes()
        .to_vec();
    let other_tenant = verifier()
        .sign(&verified::claim("beta", &copies))
        .to_bytes()
        .to_vec();
    for signature in [forged, other_tenant, vec![1; 63]] {
        let err = hub
            .journal
            .report_verified_blobs(authed("alpha", report(&copies, signature)))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err.code(),
                tonic::Code::PermissionDenied | tonic::Code::InvalidArgument
            ),
            "{err}"
        );
        assert!(err.message().contains("signature"), "{err}");
    }
    let err = hub
        .journal
        .report_verified_blobs(authed("alpha", report(&copies[1..], signed.clone())))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    // Another tenant's site may not report on this bucket at all.
    let err = hub
        .journal
        .report_verified_blobs(authed("beta", report(&copies, signed.clone())))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err}");
    assert_eq!(hub.find_missing("alpha2", second, &[x]).await, [0]);

    let marked = hub
        .journal
        .report_verified_blobs(authed("alpha", report(&copies, signed)))
        .await
        .unwrap()
        .into_inner()
        .marked;
    assert_eq!(marked, 1);
    // Now the second site dedups against it, and reads it through its
    // bucket once a commit there references it: not before.
    assert!(hub.find_missing("alpha2", second, &[x]).await.is_empty());
    let err = hub
        .try_fetch("alpha2", "alpha/data2", &[x])
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err}");
    assert!(
        err.message()
            .contains("not referenced by bucket alpha/data2"),
        "{err}"
    );
    let committed = hub
        .commit_to("alpha2", "alpha/data2", second, &[x], Vec::new())
        .await;
    assert_eq!(committed.unwrap(), 1);
    let blob = hub.fetch_one("alpha2", "alpha/data2", x).await;
    assert_eq!((&blob.data[..], blob.verified), (&b"alpha x"[..], true));
    // The other tenant still sees nothing.
    let beta = hub.open("beta").await;
    assert_eq!(hub.find_missing("beta", beta, &[x]).await, [0]);
}
