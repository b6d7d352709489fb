//! The tenant's verifier key: Ed25519, derived from the age identity, so
//! only key holders (who can open blobs, and so check them) sign
//! verification reports, and the hub checks them with the public half
//! alone (ferry_proto::verified says what is signed).

use age::secrecy::ExposeSecret;
use age::secrecy::zeroize::Zeroizing;
use ed25519_dalek::{Signer, SigningKey};

use crate::keyfile::TenantKeys;

/// BLAKE3 derive-key context for the verifier seed; never reuse it.
const VERIFIER_KEY_CONTEXT: &str = "ferry 2026 verifier signing key";

impl TenantKeys {
    fn verifier(&self) -> Option<SigningKey> {
        let identity = self.age_identity()?.to_string();
        let seed = Zeroizing::new(blake3::derive_key(
            VERIFIER_KEY_CONTEXT,
            identity.expose_secret().as_bytes(),
        ));
        Some(SigningKey::from_bytes(&seed))
    }

    /// The public verifier key, which `ferry-hub tenant verifier` registers;
    /// `None` for write-only keys.
    pub fn verifier_public(&self) -> Option<[u8; 32]> {
        self.verifier().map(|k| k.verifying_key().to_bytes())
    }

    /// The signature of a verification claim
    /// (`ferry_proto::verified::claim`); `None` for write-only keys.
    pub fn sign_verified(&self, claim: &[u8]) -> Option<[u8; 64]> {
        self.verifier().map(|k| k.sign(claim).to_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_full_key_signs_and_the_key_is_stable() {
        let keys = TenantKeys::generate();
        let public = keys.verifier_public().unwrap();
        assert_eq!(keys.verifier_public(), Some(public));
        assert_eq!(keys.to_public().verifier_public(), None);
        assert_eq!(keys.to_public().sign_verified(b"x"), None);
        let signature = keys.sign_verified(b"claim").unwrap();
        let key = ed25519_dalek::VerifyingKey::from_bytes(&public).unwrap();
        let sig = ed25519_dalek::Signature::from_bytes(&signature);
        assert!(key.verify_strict(b"claim", &sig).is_ok());
        assert!(key.verify_strict(b"claim2", &sig).is_err());
        // Another tenant's key is another key.
        assert_ne!(TenantKeys::generate().verifier_public(), Some(public));
    }
}
