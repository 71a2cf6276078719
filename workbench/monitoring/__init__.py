"""Watching the workbench work: Prometheus metrics (`metrics`, `system`, `catalog`) and
logs and progress bars (`logs`). The ground floor: every stage may import `metrics` and
`logs`; only `catalog` reads the store (for ``workbench serve-metrics``)."""
