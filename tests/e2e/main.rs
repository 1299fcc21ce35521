//! End-to-end tests: the real daemon binary, real streamlet processes, real
//! sockets and real descriptor passing.

mod access;
mod autoscale;
mod bad_input;
mod chaos;
mod check_config;
mod cli;
mod escapes;
mod events;
mod handlers;
mod hostile;
mod idle;
mod json;
mod lifecycle;
mod listen;
mod metrics;
mod monitor;
mod pacing;
mod placement;
mod quota;
mod readme;
mod reload;
mod sandbox;
mod sandbox_bounds;
mod sandbox_ids;
mod sandbox_pidns;
mod simulate;
mod streams;
mod support;
mod systemd;
