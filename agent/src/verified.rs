//! Verification reports: the chunk copies a restore opened to their ids,
//! told to the hub under the tenant's verifier signature, so that other
//! sites' backups dedup against them (ferry_proto::verified says why
//! unverified copies of another site never count).
//!
//! Reporting is best effort: a restore never fails for it. A tenant with no
//! verifier key registered at the hub refuses the first report; the
//! reporter then stops, and the rest of the restore's copies go unsent.

use std::sync::Arc;

use ferry_crypto::TenantKeys;
use ferry_proto::v1::ReportVerifiedBlobsRequest;
use ferry_proto::verified::{Copy, claim, encode_copies};
use tokio::sync::mpsc;

use crate::client::HubClient;

/// Copies waiting for the reporter; the decrypt tasks wait when it is full
/// (a report is one round trip per [`BATCH`] copies, so rarely).
pub const QUEUE: usize = 4096;

/// Copies per report: the hub takes at most 10,000 per call.
const BATCH: usize = 8192;

/// Sends reports of the copies arriving on `copies`, [`BATCH`] at a time
/// and the rest when the channel closes. Returns how many copies the hub
/// newly marked verified.
pub async fn report(
    client: HubClient,
    keys: Arc<TenantKeys>,
    bucket: String,
    mut copies: mpsc::Receiver<Copy>,
) -> u64 {
    let Some((tenant, _)) = bucket.split_once('/') else {
        return 0;
    };
    let mut batch = Vec::with_capacity(BATCH);
    let mut marked = 0;
    let mut open = true;
    while open {
        match copies.recv().await {
            Some(copy) => batch.push(copy),
            None => open = false,
        }
        if batch.len() == BATCH || (!open && !batch.is_empty()) {
            match send(&client, &keys, tenant, &bucket, &batch).await {
                Ok(n) => marked += n,
                Err(status) => {
                    // No key registered (FAILED_PRECONDITION) or another
                    // refusal: the next report would fare no better.
                    // Returning drops the receiver, so the decrypt tasks
                    // stop sending.
                    tracing::info!(%bucket, %status, "verified chunks not reported");
                    return marked;
                }
            }
            batch.clear();
        }
    }
    marked
}

async fn send(
    client: &HubClient,
    keys: &TenantKeys,
    tenant: &str,
    bucket: &str,
    batch: &[Copy],
) -> Result<u64, tonic::Status> {
    let copies = encode_copies(batch);
    let signature = keys
        .sign_verified(&claim(tenant, &copies))
        .ok_or_else(|| tonic::Status::failed_precondition("write-only keys cannot verify"))?;
    let answer = client
        .journal
        .clone()
        .report_verified_blobs(ReportVerifiedBlobsRequest {
            bucket: bucket.to_owned(),
            copies,
            signature: signature.to_vec(),
        })
        .await?;
    let marked = u64::from(answer.into_inner().marked);
    tracing::debug!(
        bucket,
        reported = batch.len(),
        marked,
        "verified chunks reported"
    );
    Ok(marked)
}
