//! `veracity-auth proxy`: a loopback HTTP server that forwards to the gateway with the
//! credentials added by `VeracityAuthLayer`.
