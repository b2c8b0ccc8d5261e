//! Simulated patients: the pure reading model, the trickle of `run --simulate`
//! and the load generator of `vitalwatch simulate`.

pub mod http_post;
pub mod load;
pub mod model;
pub mod smtp_sink;
pub mod trickle;
