//! Replays a trace through the daemon's placement, quota and scaling code on a virtual clock.
