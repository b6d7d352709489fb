//! Every request message the hub accepts, decoded from the wire as tonic
//! does (the first byte picks the message).
#![no_main]

use ferry_proto::v1::{
    BlobBatch, CheckReferencesRequest, CommitRequest, FetchBlobsRequest, FindMissingRequest,
    ListCommitsRequest, OpenSessionRequest, ReportBadBlobsRequest, ReportVerifiedBlobsRequest,
};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Some((which, body)) = data.split_first() else {
        return;
    };
    match which % 9 {
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
