"""Training with Lightning: configs and presets, the LightningModule, the run directory."""
