//! The `veracity-auth` command's parts, as a library so that tests drive them in-process too.

pub mod proxy;
