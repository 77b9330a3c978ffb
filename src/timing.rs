//! Clock and latency estimators (see the submodules).
