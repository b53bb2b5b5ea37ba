//! placeholder

pub mod lab;
