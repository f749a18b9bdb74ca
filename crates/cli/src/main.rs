//! kfleet
fn main() {}
