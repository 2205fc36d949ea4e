"""Tooling around the services: the synthetic data generator (`generator`) and `storemon up`
(`stack`)."""
