//! The testkit's own tests: its browser and OpenID provider work end to end (one binary).

mod browser;
