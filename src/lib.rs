//! trustgate: a sidecar reverse proxy that lets services trust each other by signed tokens.
//!
//! The library holds everything; `main.rs` only parses the command line and hands over.
//! Read the modules in the order a request meets them: `config` (what to do), `proxy`
//! (the data plane: accept, verify or sign, forward), `policy` (who may call what),
//! `http` (the plumbing it shares),
//! `token` (signing and verification, pure), `keys` (key formats and files, pure),
//! `trust` (the trust plane: loading, fetching, watching and reloading what `keys` and
//! `token` use), `tls`, `metrics`, and `inject` (Kubernetes manifests).
#![forbid(unsafe_code)]

#[macro_use]
mod words;

pub mod config;
pub mod fleet;
pub mod http;
pub mod inject;
pub mod keys;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod rule;
pub mod tls;
pub mod token;
pub mod trust;
