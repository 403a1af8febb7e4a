"""Demo material: the synthetic `shapes` model (generator and training script)."""
