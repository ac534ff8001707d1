//! Secrets: the provisioning credentials phones present and the admin API's bearer token.

use sha2::{Digest, Sha256};

/// The user and password phones must present for per-device files and uploads.
#[derive(Clone)]
pub struct ProvisioningCredentials {
    user: String,
    password_hash: [u8; 32],
}

impl ProvisioningCredentials {
    /// Credentials from a user name and password.
    pub fn new(user: &str, password: &str) -> Self {
        ProvisioningCredentials {
            user: user.to_string(),
            password_hash: Sha256::digest(password.as_bytes()).into(),
        }
    }

    /// Whether `user`/`password` are these credentials. Compares hashes in constant time.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        let given: [u8; 32] = Sha256::digest(password.as_bytes()).into();
        constant_time_eq(&given, &self.password_hash) & (user == self.user)
    }
}

/// Compares two byte strings without stopping at the first difference.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A new random secret: 32 lower-case hex digits (128 bits).
pub fn new_secret() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_only_the_right_pair() {
        let c = ProvisioningCredentials::new("PlcmSpIp", "pw");
        assert!(c.verify("PlcmSpIp", "pw"));
        assert!(!c.verify("PlcmSpIp", "pw2"));
        assert!(!c.verify("other", "pw"));
        assert_ne!(new_secret(), new_secret());
        assert_eq!(new_secret().len(), 32);
    }
}
