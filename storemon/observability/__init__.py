"""What operators see: JSON log lines (`logs`), Prometheus exposition (`prometheus`), the
metric families every service serves (`metric_names`), liveness and readiness answers
(`health`) and the container health probe (`probe`)."""
