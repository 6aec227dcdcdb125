"""What every long-running process shares: logging, Prometheus metrics,
systemd readiness (sd_notify) and stopping on a signal."""
