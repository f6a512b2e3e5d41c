//! Integration tests against the local lab: real `sshd` processes in namespaces, reached
//! through the real `ssh` client by the real `0km` binary. One test binary; a module per
//! subcommand; each test starts its own lab (own loopback addresses, own control and state
//! directories) so tests run in parallel and clean up on drop.

mod support;

mod archive_events;
mod archive_tools;
mod attacks;
mod backup;
mod check;
mod config;
mod exec;
mod hostkeys;
mod keys;
mod lab;
mod lifecycle;
mod pristine;
mod pull_lib;
mod recover;
mod snapshots;
mod vps_setup;
