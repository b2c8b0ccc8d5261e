//! The raw HTTP/1.1 test client lives in the testkit ([`vitalwatch_testkit::client`]).

pub use vitalwatch_testkit::client::{Resp, parse, request};
