//! Gear tables: deterministic per key, different across keys, usable by fastcdc.

// Test helpers outside #[test] fns may panic on failure too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferry_crypto::TenantKeys;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

#[test]
fn gear_tables_are_per_tenant_and_shifted() {
    let a = TenantKeys::generate();
    let b = TenantKeys::generate();
    let (ga, ga_ls) = a.gear_tables();
    assert_eq!((ga.clone(), ga_ls.clone()), a.gear_tables());
    assert_eq!((ga.clone(), ga_ls.clone()), a.to_public().gear_tables());
    let (gb, _) = b.gear_tables();
    assert_ne!(ga, gb);
    for i in 0..256 {
        assert_eq!(ga_ls[i], ga[i] << 1);
    }
}

/// Cuts `data` into chunks with `cut_gear` (min 2 KiB, avg 8 KiB, max 32 KiB).
fn cut_points(keys: &TenantKeys, data: &[u8]) -> Vec<usize> {
    use fastcdc::v2020::{Normalization, cut_gear, select_masks};
    let (gear, gear_ls) = keys.gear_tables();
    let (min, avg, max) = (2048, 8192, 32768);
    let (mask_s, mask_l) = select_masks(avg, Normalization::Level1);
    let mut points = Vec::new();
    let mut start = 0;
    while start < data.len() {
        let (_hash, len) = cut_gear(
            &data[start..],
            min,
            avg,
            max,
            mask_s,
            mask_l,
            mask_s << 1,
            mask_l << 1,
            &gear[..],
            &gear_ls[..],
        );
        assert!(len > 0 && len <= max);
        start += len;
        points.push(start);
    }
    points
}

#[test]
fn boundaries_depend_on_the_tenant_seed() {
    let mut data = vec![0u8; 1 << 20];
    StdRng::seed_from_u64(9).fill_bytes(&mut data);
    let a = TenantKeys::generate();
    let b = TenantKeys::generate();
    let pa = cut_points(&a, &data);
    assert_eq!(pa, cut_points(&a, &data));
    assert_ne!(pa, cut_points(&b, &data));
    assert_eq!(*pa.last().unwrap(), data.len());
}
