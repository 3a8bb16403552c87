//! The `fhir-server` binary's library: configuration and the wiring of the event log, the
//! projectors and the API into one process.
//!
//! Layout:
//! - [`config`]: the one configuration struct (defaults, file, environment, flags).
//! - [`serve`]: `run(config, listener, shutdown)`: open the log, start projectors, serve HTTP,
//!   and shut down gracefully.
//! - [`search_slot`]: the search index in use and `reindex` (rebuild by replay, swap);
//!   [`admin`]: the `$reindex` endpoint.
//! - [`verify`]: walk the whole log and check every resource's hash chain.
//! - [`import`]: bulk load of Bundle and NDJSON files through the API.
//! - [`history_index`], [`search_backend`]: adapters from the projectors to the API's ports;
//!   [`auth`]: from the configuration and `access_control` to the API's authentication port.

pub mod admin;
pub mod auth;
pub mod aws;
pub mod blobs;
pub mod config;
pub mod exports;
pub mod guides;
pub mod history_index;
pub mod ig_cli;
pub mod import;
pub mod notifier;
pub mod reindex_client;
pub mod search_backend;
pub mod search_params;
pub mod search_slot;
pub mod serve;
pub mod verify;

pub use config::Config;
