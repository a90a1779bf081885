//! Integration tests: the real service over real TCP, on a real SQLite file and a real
//! Postgres server, and the real binary as an operator runs it.

mod api;
mod cluster;
mod conformance;
mod copy;
mod diskfull;
mod durability;
mod hostile;
mod keys;
mod limits;
mod load;
mod outage;
mod pages;
mod process;
mod redirect;
mod rolling;
mod router;
mod soak;
mod support;
mod track;
