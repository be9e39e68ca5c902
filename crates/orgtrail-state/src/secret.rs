//! Resolving a source's API key at use time.

use secrecy::{ExposeSecret, SecretString};

use crate::error::{Result, StateError};
use crate::model::{KeyRef, Source};

/// Largest key file read (an org API key is a few hundred bytes).
const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// Returns the API key of `source`: reads the environment variable or file it references, or returns
/// the value stored in the state database.
///
/// Errors name the reference (`env:NAME`, `file:PATH`) and the reason, never a value. Reading a key
/// file is a tiny blocking read; call this from `spawn_blocking` if that matters to the caller.
pub fn resolve_key(source: &Source) -> Result<SecretString> {
    let unavailable = |reason: String| StateError::KeyUnavailable {
        source_name: source.name.clone(),
        reference: source.key_ref.to_db(),
        reason,
    };
    let value: SecretString = match &source.key_ref {
        KeyRef::Env(name) => match std::env::var(name) {
            Ok(v) => SecretString::from(v),
            Err(std::env::VarError::NotPresent) => {
                return Err(unavailable(format!(
                    "the environment variable {name} is not set; export it before starting orgtrail"
                )));
            }
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(unavailable(format!(
                    "the environment variable {name} is not valid UTF-8"
                )));
            }
        },
        KeyRef::File(path) => {
            let meta = std::fs::metadata(path).map_err(|e| {
                unavailable(format!(
                    "{e}; check that the file exists and is readable by orgtrail"
                ))
            })?;
            if !meta.is_file() {
                return Err(unavailable("it is not a regular file".to_owned()));
            }
            if meta.len() > MAX_KEY_FILE_BYTES {
                return Err(unavailable(format!(
                    "the file is {} bytes, larger than a key file can be ({MAX_KEY_FILE_BYTES}); point at a file holding only the key",
                    meta.len()
                )));
            }
            warn_if_shared(source, &meta);
            let bytes = std::fs::read(path).map_err(|e| unavailable(format!("{e}")))?;
            match String::from_utf8(bytes) {
                Ok(s) => SecretString::from(s),
                Err(_) => return Err(unavailable("the file is not valid UTF-8".to_owned())),
            }
        }
        KeyRef::Stored => match &source.stored_key {
            Some(k) => k.clone(),
            None => {
                return Err(unavailable(
                    "no key is stored for this source; set the key again".to_owned(),
                ));
            }
        },
    };
    let trimmed = value.expose_secret().trim();
    if trimmed.is_empty() {
        return Err(unavailable("the key is empty".to_owned()));
    }
    if trimmed.len() == value.expose_secret().len() {
        return Ok(value);
    }
    Ok(SecretString::from(trimmed.to_owned()))
}

#[cfg(unix)]
fn warn_if_shared(source: &Source, meta: &std::fs::Metadata) {
    use std::os::unix::fs::PermissionsExt;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            source = %source.name,
            reference = %source.key_ref.to_db(),
            "the API key file is readable by group or others; chmod 600 it"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_shared(_source: &Source, _meta: &std::fs::Metadata) {}
