//! Property tests across crates. The tests live in `tests/`; this library holds
//! the naive reference models they compare against.

pub mod naive_fib;
