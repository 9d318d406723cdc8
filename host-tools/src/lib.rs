//! eq-tools library: the pieces behind the `eq` command line.

pub mod dataset;
