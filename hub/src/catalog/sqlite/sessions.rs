//! Upload sessions in SQLite.

use ferry_proto::BlobId;
use rusqlite::{OptionalExtension, params};

use super::namespace::{bucket_tenant, site_tenant};
use super::{Tx, sql};
use crate::catalog::error::stored_id;
use crate::catalog::sessions::check_renewable;
use crate::catalog::{
    BucketId, CatalogError, Session, SessionId, SessionRead, SessionWrite, SiteId,
};

impl SessionRead for Tx<'_> {
    fn session(&mut self, id: SessionId) -> Result<Option<Session>, CatalogError> {
        let raw = self
            .conn
            .query_row(
                "SELECT site_id, bucket_id, header_id, lease_until, closed FROM sessions WHERE id = ?1",
                [id.0],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Vec<u8>>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, i64>(4)?,
                    ))
                },
            )
            .optional()
            .map_err(sql("look up session"))?;
        raw.map(|(site, bucket, header, lease, closed)| {
            Ok(Session {
                id,
                site: SiteId(site),
                bucket: BucketId(bucket),
                header_id: stored_id("sessions.header_id", &header)?,
                lease_until_unix: lease,
                closed: closed != 0,
            })
        })
        .transpose()
    }
}

impl SessionWrite for Tx<'_> {
    fn open_session(
        &mut self,
        site: SiteId,
        bucket: BucketId,
        header_id: &BlobId,
        lease_until_unix: i64,
    ) -> Result<SessionId, CatalogError> {
        if site_tenant(self.conn, site)? != bucket_tenant(self.conn, bucket)? {
            return Err(CatalogError::Invalid {
                field: "session.site",
                reason: format!("site {site} and bucket {bucket} belong to different tenants"),
            });
        }
        self.conn
            .execute(
                "INSERT INTO sessions (site_id, bucket_id, header_id, lease_until) VALUES (?1, ?2, ?3, ?4)",
                params![site.0, bucket.0, &header_id.0[..], lease_until_unix],
            )
            .map_err(sql("insert session"))?;
        Ok(SessionId(self.conn.last_insert_rowid()))
    }

    fn renew_session(&mut self, id: SessionId, lease_until_unix: i64) -> Result<(), CatalogError> {
        let closed: Option<i64> = self
            .conn
            .query_row("SELECT closed FROM sessions WHERE id = ?1", [id.0], |r| {
                r.get(0)
            })
            .optional()
            .map_err(sql("look up session"))?;
        check_renewable(id, closed.map(|c| c != 0))?;
        self.conn
            .execute(
                "UPDATE sessions SET lease_until = MAX(lease_until, ?2) WHERE id = ?1",
                params![id.0, lease_until_unix],
            )
            .map_err(sql("renew session"))?;
        Ok(())
    }

    fn close_session(&mut self, id: SessionId) -> Result<(), CatalogError> {
        let changed = self
            .conn
            .execute("UPDATE sessions SET closed = 1 WHERE id = ?1", [id.0])
            .map_err(sql("close session"))?;
        if changed == 0 {
            return Err(CatalogError::NotFound {
                what: "session",
                key: id.to_string(),
            });
        }
        Ok(())
    }
}
