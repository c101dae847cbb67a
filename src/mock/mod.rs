//! The embedded Veracity mock (placeholder).
