//! The organization API key, held as a secret.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

/// An Atlassian organization API key.
///
/// Held as a [`secrecy::SecretString`] (zeroized on drop). `Debug` prints `ApiKey([REDACTED])`;
/// there is no `Display`. The key is only exposed inside this crate, to build the
/// `Authorization` header (which is marked sensitive).
#[derive(Clone)]
pub struct ApiKey(SecretString);

impl ApiKey {
    /// Wraps a key. Surrounding whitespace (such as the trailing newline of a key file) is
    /// removed.
    pub fn new(key: impl Into<String>) -> Self {
        let key: String = key.into();
        let trimmed = key.trim();
        if trimmed.len() == key.len() {
            Self(SecretString::from(key))
        } else {
            Self(SecretString::from(trimmed.to_string()))
        }
    }

    /// `true` when the key is empty (after trimming).
    pub fn is_empty(&self) -> bool {
        self.0.expose_secret().is_empty()
    }

    /// The key itself: only for the `Authorization` header and the limiter fingerprint.
    pub(crate) fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey([REDACTED])")
    }
}

impl From<String> for ApiKey {
    fn from(key: String) -> Self {
        Self::new(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted_and_key_is_trimmed() {
        let k = ApiKey::new("  s3cr3t-value\n");
        assert_eq!(format!("{k:?}"), "ApiKey([REDACTED])");
        assert_eq!(format!("{k:#?}"), "ApiKey([REDACTED])");
        assert_eq!(k.expose(), "s3cr3t-value");
        assert!(!k.is_empty());
        assert!(ApiKey::new(" \n").is_empty());
    }
}
