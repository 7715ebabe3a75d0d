//! What Twenty's server sends: its webhook signature and its payload shapes
//! (`../shared/twenty-wire-format.md` in the project's notes; docs/message-format.md).

pub mod event;
pub mod signature;
