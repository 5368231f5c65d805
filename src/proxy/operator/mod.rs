//! Beside the data path, for whoever runs the sidecar: the admin listener ([`admin`]:
//! probes, metrics, the JWKS, `/trust`), `trustgate explain` ([`explain`]: the inbound's
//! own steps, observed instead of served) and the exposure check ([`exposure`]: can the
//! app be reached around the sidecar?).
pub mod admin;
pub mod explain;
pub mod exposure;
