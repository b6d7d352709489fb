//! Every request message the hub accepts, and the replication answers an
//! agent takes, decoded from the wire as tonic does (the first byte picks
//! the message).
#![no_main]

use ferry_proto::v1::{
    AckRequest, BlobBatch, CheckReferencesRequest, CommitInfo, CommitRequest, CursorRequest,
    CursorResponse, FetchBlobsRequest, FindMissingRequest, FollowRequest, HoldRequest,
    ListCommitsRequest, OpenSessionRequest, ReportBadBlobsRequest, ReportRequest,
    ReportVerifiedBlobsRequest,
};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Some((which, body)) = data.split_first() else {
        return;
    };
    match which % 16 {
        0 => {
            let _ = OpenSessionRequest::decode(body);
        }
        1 => {
            let _ = FindMissingRequest::decode(body);
        }
        2 => {
            if let Ok(batch) = BlobBatch::decode(body) {
                for blob in &batch.blobs {
                    let _ = ferry_proto::BlobId::from_slice("Blob.id", &blob.id);
                }
            }
        }
        3 => {
            let _ = CheckReferencesRequest::decode(body);
        }
        4 => {
            let _ = CommitRequest::decode(body);
        }
        5 => {
            let _ = ListCommitsRequest::decode(body);
        }
        6 => {
            let _ = FetchBlobsRequest::decode(body);
        }
        7 => {
            let _ = ReportBadBlobsRequest::decode(body);
        }
        8 => {
            let _ = FollowRequest::decode(body);
        }
        9 => {
            let _ = AckRequest::decode(body);
        }
        10 => {
            let _ = CursorRequest::decode(body);
        }
        11 => {
            let _ = HoldRequest::decode(body);
        }
        12 => {
            let _ = ReportRequest::decode(body);
        }
        13 => {
            let _ = CursorResponse::decode(body);
        }
        14 => {
            if let Ok(commit) = CommitInfo::decode(body) {
                for id in &commit.manifest {
                    let _ = ferry_proto::BlobId::from_slice("CommitInfo.manifest", id);
                }
            }
        }
        _ => {
            if let Ok(report) = ReportVerifiedBlobsRequest::decode(body) {
                let _ = ferry_proto::verified::decode_copies(&report.copies);
                let _ = ferry_proto::verified::check(
                    report.copies.get(..32).unwrap_or_default(),
                    &report.bucket,
                    &report.copies,
                    &report.signature,
                );
                let _ = ferry_proto::verified::parse_public_key(&report.bucket);
            }
        }
    }
});
