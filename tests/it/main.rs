//! The integration tests: one binary, one module per area, `support` linked once.
//! Sockets on `127.0.0.1:0`, real crypto and files, the real binary where it matters,
//! apps, clients and JOSE libraries from other stacks where the protocol is the point.
mod support;

// The proxy, end to end.
mod affinity;
mod authz;
mod grpc;
mod proxy;
mod tls;
// An attacker who has read the code.
mod attack_exhaustion;
mod attack_fleet;
mod attack_identity;
mod attack_jwt;
mod attack_paths;
mod attack_person;
mod attack_smuggling;
mod attack_sources;
// The trust plane: reloads and key URLs.
mod platform;
mod reload;
mod trust_url;
// Who may call what: rules, claim headers, per-caller limits, explain.
mod explain;
// The person behind the call: people's tokens at the edge, transaction tokens after it.
mod dpop;
mod end_users;
mod policy;
// The fleet: limits and single-use tokens across replicas, on a real Redis.
mod fleet;
// Keys and tokens, with other stacks' JOSE libraries.
mod interop;
mod keys;
mod tokens;
// The binary and its commands; deployment.
mod cli;
mod inject;
mod newcomer;
mod observability;
mod pod;
mod process;
// The shape of src/ (import cycles, file and function lengths).
mod layout;
