//! Nothing here yet: the engines are exercised by `tests/` and `examples/`.
