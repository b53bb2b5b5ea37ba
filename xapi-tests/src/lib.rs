//! xapi-tests: plays xapi for our SR plugins.
//!
//! Real xapi cannot run on our machines, so this crate emulates the part of it that drives
//! storage: a XenAPI server ([`server`], [`rpc`]) over a persisted database ([`db`]), SM
//! execution exactly like xapi's `sm_exec` ([`smexec`]), the storage and VM operations mapped to
//! SMAPI calls as the SMAPI spec's appendix A says ([`storage`]), the `xe` command line
//! ([`cli`]), a trace of every call ([`trace`]) and the appendix checker and runner
//! ([`appendix`]).
//!
//! | module | holds |
//! |---|---|
//! | [`config`] | an instance: state directory, hosts (local or through the lab agent), template |
//! | [`datapaths`] | per-host VDI datapath states, xapi's `Vdi_automaton` table (its SMAPI calls in `storage::datapath`) |
//! | [`emulator`] | the shared state and the one SMAPI execution path |
//! | [`error`] | XenAPI errors with xapi's names |
//! | [`lab`] | the storage lab seen from a test inside it (lab helper) |
#![forbid(unsafe_code)]

pub mod appendix;
pub mod cli;
pub mod config;
pub mod datapaths;
pub mod db;
pub mod emulator;
pub mod error;
pub mod lab;
pub mod rpc;
pub mod server;
pub mod smexec;
pub mod storage;
pub mod trace;
