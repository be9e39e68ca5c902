//! Panther-compatible log schemas.
