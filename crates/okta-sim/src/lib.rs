pub fn placeholder() {}
pub mod slack;
pub mod smtp;
