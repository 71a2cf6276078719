"""Finding and describing faces: typed results and the `Detector` / `Embedder` protocols
(`types`), `ModelPack` (`pack`), alignment, model files (`weights`), runtimes
(`runtime`), the registries of packs, detectors and embedders (`registry`) and the
backends behind them (`backends`), and the similarity calibration (`calibration`)."""
