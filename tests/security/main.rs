//! Bad input and secrets: no secret reaches logs, `Debug`, `Display` or errors, and no token
//! response, however malformed, makes the parser panic.

#[path = "../common/mod.rs"]
mod common;

mod parser_props;
mod secrets;
