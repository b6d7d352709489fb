//! Reading the blobs of one FetchBlobs call: neighbours in a pack are read
//! together, and a few reads are in flight at once, answers still in the
//! order asked.
//!
//! A restore asks for chunks in the order a backup wrote them, so they sit
//! side by side in the same packs. One ranged read per blob costs a request
//! each (an S3 round trip, and on Garage a block decode each); one read per
//! run of neighbours costs one request per several megabytes.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use ferry_proto::BlobId;
use tokio::task::JoinHandle;

use crate::blobstore::Pools;
use crate::catalog::BlobLocation;
use crate::pack::pack_object_name;
use crate::packer::{PackerError, check_blob};

/// Largest single read (bounds memory: `READS_IN_FLIGHT` of these at most).
/// An S3 server reads whole blocks (Garage: 1 MiB), so the block where one
/// read ends and the next begins is read twice; longer reads waste less.
const MAX_SPAN: u64 = 8 << 20;
/// Bytes of other blobs a read may step over to join two wanted ones.
const MAX_GAP: u64 = 256 << 10;
/// Pack reads running at once. An S3 server serves each read at its own
/// pace, so what counts is the bytes asked for at once: on Garage a 1 GiB
/// restore took 2.6-2.8 s with 8 reads of up to 4 MiB, 2.3-2.6 s with 16
/// (hub peak RSS 70 -> 116 MiB; 16 of 2 MiB gained nothing), and 2.2-2.4 s
/// with 8 of up to 8 MiB, for 6 % less of Garage's CPU.
const READS_IN_FLIGHT: usize = 8;

/// One ranged read of a pack and the wanted blobs in it, in request order.
#[derive(Debug, PartialEq)]
pub struct Span {
    pub start: u64,
    pub end: u64,
    pub blobs: Vec<BlobLocation>,
}

/// What one requested id turns into.
#[derive(Debug, PartialEq)]
pub enum Planned {
    /// Not stored for this tenant.
    Missing(BlobId),
    Read(Span),
}

/// Groups the requested blobs into reads, keeping request order: a blob joins
/// the previous read when it lies in the same pack, after it, close enough,
/// and the read stays under `MAX_SPAN`.
pub fn plan(wanted: impl IntoIterator<Item = (BlobId, Option<BlobLocation>)>) -> Vec<Planned> {
    let mut planned: Vec<Planned> = Vec::new();
    for (id, loc) in wanted {
        let Some(loc) = loc else {
            planned.push(Planned::Missing(id));
            continue;
        };
        let end = loc.offset + u64::from(loc.length);
        if let Some(Planned::Read(span)) = planned.last_mut()
            && let Some(last) = span.blobs.last()
            && last.pool == loc.pool
            && last.pack == loc.pack
            && loc.offset >= span.end
            && loc.offset - span.end <= MAX_GAP
            && end - span.start <= MAX_SPAN
        {
            span.end = end;
            span.blobs.push(loc);
            continue;
        }
        planned.push(Planned::Read(Span {
            start: loc.offset,
            end,
            blobs: vec![loc],
        }));
    }
    planned
}

/// A blob read and checked, or why not.
pub type Fetched = Result<(BlobLocation, Bytes), (BlobId, FetchError)>;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("blob is not stored")]
    Missing,
    #[error(transparent)]
    Read(#[from] PackerError),
}

async fn read_span(pools: Arc<Pools>, span: Span) -> Vec<Fetched> {
    let Some(first) = span.blobs.first() else {
        return Vec::new();
    };
    let failed = |e: PackerError| -> Vec<Fetched> {
        let e = Arc::new(e);
        span.blobs
            .iter()
            .map(|b| Err((b.id, FetchError::Read(PackerError::Shared(e.clone())))))
            .collect()
    };
    let Some(store) = pools.get(&first.pool) else {
        return failed(PackerError::UnknownPool {
            pool: first.pool.clone(),
            pack: first.pack.clone(),
        });
    };
    let bytes = match store
        .get_range(
            &pack_object_name(&first.pack),
            span.start,
            span.end - span.start,
        )
        .await
    {
        Ok(bytes) => bytes,
        Err(e) => {
            return failed(PackerError::Read {
                id: first.id,
                pool: first.pool.clone(),
                pack: first.pack.clone(),
                source: Arc::new(e),
            });
        }
    };
    // Each blob is a slice of the one read, not a copy of its own.
    let bytes = Bytes::from(bytes);
    span.blobs
        .into_iter()
        .map(|loc| {
            let from = usize::try_from(loc.offset - span.start).unwrap_or(usize::MAX);
            let to = from.saturating_add(loc.length as usize);
            let data = match to <= bytes.len() {
                true => bytes.slice(from..to),
                false => Bytes::new(),
            };
            match check_blob(&loc, &data) {
                Ok(()) => Ok((loc, data)),
                Err(e) => Err((loc.id, FetchError::Read(e))),
            }
        })
        .collect()
}

/// Runs the planned reads, `READS_IN_FLIGHT` at a time, and hands every blob
/// to `deliver` in request order; stops at the first failure or when
/// `deliver` says stop (returns false).
pub async fn run(
    pools: Arc<Pools>,
    planned: Vec<Planned>,
    mut deliver: impl AsyncFnMut(Fetched) -> bool,
) {
    let mut in_flight: VecDeque<JoinHandle<Vec<Fetched>>> = VecDeque::new();
    let mut pending = planned.into_iter();
    loop {
        while in_flight.len() < READS_IN_FLIGHT {
            match pending.next() {
                Some(Planned::Missing(id)) => {
                    // Keep order: a missing blob waits for the reads before it.
                    in_flight.push_back(tokio::spawn(async move {
                        vec![Err((id, FetchError::Missing))]
                    }));
                }
                Some(Planned::Read(span)) => {
                    in_flight.push_back(tokio::spawn(read_span(pools.clone(), span)));
                }
                None => break,
            }
        }
        let Some(next) = in_flight.pop_front() else {
            return;
        };
        let results = match next.await {
            Ok(results) => results,
            Err(e) => vec![Err((
                BlobId([0; 32]),
                FetchError::Read(PackerError::Task {
                    op: "read pack span",
                    detail: e.to_string(),
                }),
            ))],
        };
        for fetched in results {
            let failed = fetched.is_err();
            if !deliver(fetched).await || failed {
                for task in in_flight {
                    task.abort();
                }
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ferry_proto::BlobKind;

    fn loc(id: u8, pack: &str, offset: u64, length: u32) -> BlobLocation {
        BlobLocation {
            id: BlobId([id; 32]),
            kind: BlobKind::Data,
            flags: 0,
            header_id: BlobId([0; 32]),
            pool: "p".into(),
            pack: pack.into(),
            offset,
            length,
            site: crate::catalog::SiteId::UNKNOWN,
            verified: false,
        }
    }

    fn spans(planned: &[Planned]) -> Vec<(u64, u64, usize)> {
        planned
            .iter()
            .map(|p| match p {
                Planned::Missing(_) => (0, 0, 0),
                Planned::Read(s) => (s.start, s.end, s.blobs.len()),
            })
            .collect()
    }

    #[test]
    fn neighbours_in_a_pack_join_one_read_in_request_order() {
        let planned = plan([
            (BlobId([1; 32]), Some(loc(1, "a", 100, 50))),
            (BlobId([2; 32]), Some(loc(2, "a", 150, 50))),
            // A small gap (another tenant's or an unwanted blob) is stepped over.
            (BlobId([3; 32]), Some(loc(3, "a", 1000, 10))),
            // Another pack starts a new read; so does a missing id.
            (BlobId([4; 32]), Some(loc(4, "b", 0, 10))),
            (BlobId([5; 32]), None),
            (BlobId([6; 32]), Some(loc(6, "b", 10, 10))),
            // Going backwards (the same blob asked twice) starts a new read.
            (BlobId([6; 32]), Some(loc(6, "b", 10, 10))),
            // Too far away.
            (BlobId([7; 32]), Some(loc(7, "b", 20 + MAX_GAP + 1, 10))),
        ]);
        assert_eq!(
            spans(&planned),
            [
                (100, 1010, 3),
                (0, 10, 1),
                (0, 0, 0),
                (10, 20, 1),
                (10, 20, 1),
                (20 + MAX_GAP + 1, 30 + MAX_GAP + 1, 1)
            ]
        );
    }

    #[test]
    fn a_read_never_grows_past_the_span_limit() {
        // Four blobs of 3/8 of the limit: two fit in a read, three do not.
        let chunk = u32::try_from(MAX_SPAN * 3 / 8).unwrap();
        let planned = plan((0..4u8).map(|i| {
            let l = loc(i, "a", u64::from(i) * u64::from(chunk), chunk);
            (l.id, Some(l))
        }));
        assert!(spans(&planned).iter().all(|(s, e, _)| e - s <= MAX_SPAN));
        assert_eq!(spans(&planned).len(), 2);
    }
}
