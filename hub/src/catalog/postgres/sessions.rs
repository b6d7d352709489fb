//! Upload sessions in PostgreSQL.

use ferry_proto::BlobId;

use super::{Tx, pg};
use crate::catalog::error::stored_id;
use crate::catalog::sessions::check_renewable;
use crate::catalog::{
    BucketId, CatalogError, Session, SessionId, SessionRead, SessionWrite, SiteId,
};

impl SessionRead for Tx<'_, '_> {
    fn session(&mut self, id: SessionId) -> Result<Option<Session>, CatalogError> {
        let raw = self.opt(
            "look up session",
            "SELECT site_id, bucket_id, header_id, lease_until, closed FROM sessions WHERE id = $1",
            &[&id.0],
            |r| {
                Ok((
                    r.try_get::<_, i64>(0)?,
                    r.try_get::<_, i64>(1)?,
                    r.try_get::<_, Vec<u8>>(2)?,
                    r.try_get::<_, i64>(3)?,
                    r.try_get::<_, bool>(4)?,
                ))
            },
        )?;
        raw.map(|(site, bucket, header, lease, closed)| {
            Ok(Session {
                id,
                site: SiteId(site),
                bucket: BucketId(bucket),
                header_id: stored_id("sessions.header_id", &header)?,
                lease_until_unix: lease,
                closed,
            })
        })
        .transpose()
    }
}

impl SessionWrite for Tx<'_, '_> {
    fn open_session(
        &mut self,
        site: SiteId,
        bucket: BucketId,
        header_id: &BlobId,
        lease_until_unix: i64,
    ) -> Result<SessionId, CatalogError> {
        if self.site_tenant(site)? != self.bucket_tenant(bucket, false)? {
            return Err(CatalogError::Invalid {
                field: "session.site",
                reason: format!("site {site} and bucket {bucket} belong to different tenants"),
            });
        }
        self.tx
            .query_one(
                "INSERT INTO sessions (site_id, bucket_id, header_id, lease_until) \
                 VALUES ($1, $2, $3, $4) RETURNING id",
                &[&site.0, &bucket.0, &&header_id.0[..], &lease_until_unix],
            )
            .and_then(|r| r.try_get(0))
            .map(SessionId)
            .map_err(pg("insert session"))
    }

    fn renew_session(&mut self, id: SessionId, lease_until_unix: i64) -> Result<(), CatalogError> {
        let closed = self.opt(
            "look up session",
            "SELECT closed FROM sessions WHERE id = $1 FOR UPDATE",
            &[&id.0],
            |r| r.try_get::<_, bool>(0),
        )?;
        check_renewable(id, closed)?;
        self.tx
            .execute(
                "UPDATE sessions SET lease_until = GREATEST(lease_until, $2) WHERE id = $1",
                &[&id.0, &lease_until_unix],
            )
            .map_err(pg("renew session"))?;
        Ok(())
    }

    fn close_session(&mut self, id: SessionId) -> Result<(), CatalogError> {
        let changed = self
            .tx
            .execute("UPDATE sessions SET closed = TRUE WHERE id = $1", &[&id.0])
            .map_err(pg("close session"))?;
        if changed == 0 {
            return Err(CatalogError::NotFound {
                what: "session",
                key: id.to_string(),
            });
        }
        Ok(())
    }
}
