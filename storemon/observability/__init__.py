"""What operators see: JSON log lines (`logs`), Prometheus exposition (`prometheus`) and the
metric families every service serves (`metric_names`)."""
