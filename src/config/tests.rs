//! Unit tests for the loading pipeline as a whole.
