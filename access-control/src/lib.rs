//! Who is calling, and what their groups allow. Verifies bearer tokens (JWTs signed with RS256
//! or ES256 by keys published as a JWKS, with a configured issuer and audience) and API keys,
//! and hands back the token's claims; [`roles`] maps a token's groups to grants.
//!
//! - [`jwks`]: the signing keys, fetched from the JWKS URL, cached, and fetched again when a
//!   token names a key not seen yet (rotation), at most every [`jwks::REFRESH_AT_MOST_EVERY`].
//! - [`verify`]: one token checked: algorithm, key, signature, `exp`, `nbf`, `iss`, `aud`.
//! - [`api_key`]: an `x-api-key` header compared in constant time.
//! - [`roles`]: role groups and their rules (interactions on resource types).
//! - [`smart`]: SMART App Launch scopes (v1 and v2) as interactions on resource types.

pub mod api_key;
pub mod jwks;
pub mod roles;
pub mod smart;
pub mod verify;

pub use jwks::KeyCache;
pub use jsonwebtoken::Algorithm;
pub use verify::{JwtSettings, JwtVerifier, Rejection};
