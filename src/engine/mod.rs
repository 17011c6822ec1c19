//! How connections get a flow of control.
//!
//! Only the coroutine engine exists so far: one may coroutine per
//! connection.

pub(crate) mod coroutine;
