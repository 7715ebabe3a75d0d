//! What Twenty's server sends: its webhook signature and its payload shapes
//! (`../shared/twenty-wire-format.md` in the project's notes; docs/message-format.md), and
//! what a record's timestamps say about its last change.

pub(crate) mod change;
pub mod event;
pub mod signature;
