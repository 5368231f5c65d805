//! trustgate: a sidecar reverse proxy that lets services trust each other by signed tokens.
//!
//! The library holds everything; `main.rs` only parses the command line and hands over.
//! Read the modules in the order a request meets them: `config` (what to do), `keys`
//! (whom to trust, what to sign with), `token` (signing and verification), `cli` (the
//! offline commands).
#![forbid(unsafe_code)]

pub mod admin;
pub mod config;
pub mod fetch;
pub mod inject;
pub mod keys;
pub mod metrics;
pub mod proxy;
pub mod tls;
pub mod token;
