//! Site bearer tokens: how they travel and how the hub stores them.

/// Metadata key that carries `Bearer <token>` on every RPC.
pub const AUTHORIZATION: &str = "authorization";

/// Prefix of every site token, so a leaked one is recognisable in logs and scanners.
pub const TOKEN_PREFIX: &str = "ferry_site_";

/// What the hub keeps of a token: its BLAKE3 hash. Tokens carry 256 random
/// bits, so a fast unsalted hash is enough to make the stored form useless.
pub fn token_hash(token: &str) -> [u8; 32] {
    *blake3::hash(token.trim().as_bytes()).as_bytes()
}

/// Extracts the token from an `authorization` header value.
pub fn parse_bearer(value: &str) -> Option<&str> {
    let token = value.strip_prefix("Bearer ")?.trim();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_parsing() {
        assert_eq!(parse_bearer("Bearer abc"), Some("abc"));
        assert_eq!(parse_bearer("Bearer "), None);
        assert_eq!(parse_bearer("Basic abc"), None);
        assert_ne!(token_hash("a"), token_hash("b"));
        assert_eq!(token_hash("a\n"), token_hash("a"));
    }
}
