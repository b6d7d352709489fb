//! The conformance suite and PostgreSQL-specific checks, against a real
//! server started per test (tests/src/postgres.rs).

use super::*;
use crate::catalog::{BlobIndex, CatalogExt, ErrorKind, conformance};
use ferry_tests::postgres::Postgres;

fn connect(pg: &Postgres, url: &str) -> PostgresCatalog {
    PostgresCatalog::connect(url, Some(pg.password())).unwrap()
}

#[test]
fn conformance_suite() {
    let pg = Postgres::start();
    let cat = connect(&pg, &pg.url());
    conformance::run_all(&cat);
}

#[test]
fn a_second_hub_sees_everything_and_appends_gaplessly_beside_the_first() {
    let pg = Postgres::start();
    let (one, two) = (connect(&pg, &pg.url()), connect(&pg, &pg.url()));
    let before = conformance::populate(&one);
    conformance::check_populated(&two, &before);
    // Two hub processes appending to one bucket at once: one sequence.
    conformance::concurrent_appends_from(&[&one, &two]);
    conformance::concurrent_policy_applies(&[&one, &two]);
}

#[test]
fn a_password_in_the_url_is_refused_and_a_wrong_one_is_unavailable() {
    let pg = Postgres::start();
    let inline = format!(
        "postgresql://ferry:{}@127.0.0.1:{}/ferry",
        pg.password(),
        pg.port
    );
    let err = PostgresCatalog::connect(&inline, None).unwrap_err();
    assert!(
        matches!(
            err,
            CatalogError::Invalid {
                field: "catalog.url",
                ..
            }
        ),
        "{err:?}"
    );
    let err = PostgresCatalog::connect(&pg.url(), Some("wrong")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err:?}");
    assert!(!err.to_string().contains(pg.password()), "{err}");
    let err = PostgresCatalog::connect("not a url at all ::", None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err:?}");
}

#[test]
fn newer_schema_is_refused() {
    let pg = Postgres::start();
    drop(connect(&pg, &pg.url()));
    let mut client = connect(&pg, &pg.url()).client().unwrap();
    client
        .execute("UPDATE schema_version SET version = version + 1", &[])
        .unwrap();
    let err = PostgresCatalog::connect(&pg.url(), Some(pg.password())).unwrap_err();
    assert!(matches!(err, CatalogError::SchemaTooNew { .. }), "{err:?}");
}

#[test]
fn a_dropped_connection_is_replaced() {
    let pg = Postgres::start();
    let cat = connect(&pg, &pg.url());
    let tenant = cat.write(|w| w.create_tenant("before")).unwrap();
    // The server ends every other session, the pooled one included.
    let mut admin = connect(&pg, &pg.url()).client().unwrap();
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE pid <> pg_backend_pid() AND datname = 'ferry'",
            &[],
        )
        .unwrap();
    // The first call may see the dead connection; the next one reconnects.
    let _ = cat.read(|r| r.tenant(tenant));
    assert_eq!(
        cat.read(|r| r.tenant(tenant)).unwrap().unwrap().name,
        "before"
    );
    assert!(
        cat.missing_blobs(conformance::site_of(&cat, tenant), &[])
            .unwrap()
            .is_empty()
    );
}

/// A hub drops its catalog on a runtime thread as it stops: closing the
/// idle connections there must not panic (the client closes them with a
/// `block_on` of its own).
#[test]
fn a_catalog_dropped_on_a_runtime_thread_closes_its_connections() {
    let pg = Postgres::start();
    let cat = connect(&pg, &pg.url());
    // A read leaves a connection idle in the pool.
    assert!(cat.read(|r| r.tenant_by_name("nobody")).unwrap().is_none());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async move { drop(cat) });
}

#[test]
fn a_first_version_catalog_is_migrated_and_keeps_the_pack_key() {
    let pg = Postgres::start();
    let mut config: postgres::Config = pg.url().parse().unwrap();
    config.password(pg.password());
    let mut raw = config.connect(postgres::NoTls).unwrap();
    raw.batch_execute(schema::MIGRATIONS[0]).unwrap();
    raw.batch_execute(
        "CREATE TABLE schema_version (id INTEGER PRIMARY KEY CHECK (id = 1), version BIGINT NOT NULL);
         INSERT INTO schema_version VALUES (1, 1);",
    )
    .unwrap();
    let cat = connect(&pg, &pg.url());
    let version: i64 = raw
        .query_one("SELECT version FROM schema_version", &[])
        .unwrap()
        .get(0);
    assert_eq!(version, schema::MIGRATIONS.len() as i64);
    let before = conformance::populate(&cat);
    conformance::check_populated(&cat, &before);
    // A blob row naming a pack that does not exist is still refused.
    let err = raw
        .execute(
            "INSERT INTO blobs (tenant_id, id, site_id, kind, flags, header, pack_id, pack_offset, length) \
             SELECT tenant_id, '\\x00'::bytea, site_id, kind, flags, header, 999999, 0, 1 FROM blobs LIMIT 1",
            &[],
        )
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(&postgres::error::SqlState::FOREIGN_KEY_VIOLATION),
        "{err}"
    );
}
