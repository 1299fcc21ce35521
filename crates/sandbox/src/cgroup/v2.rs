//! cgroup v2.
