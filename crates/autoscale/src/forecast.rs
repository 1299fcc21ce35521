//! A seasonal model of arrivals per minute. (Filled in with the model.)
