"""Code both Flink apps share; no Flink imports outside `flink_io` and `runtime`."""
