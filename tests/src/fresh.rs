//! Fresh ports and throwaway secrets for the servers tests start.

/// A port free right now on 127.0.0.1 (the OS picks it).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// 64 hex digits, fresh per call: enough for throwaway secrets.
pub fn hex32() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    blake3::hash(format!("{t}-{n}-{}", std::process::id()).as_bytes())
        .to_hex()
        .to_string()
}
