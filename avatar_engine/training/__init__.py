"""Training the embedded default model: synthetic data, the VAE, the flow-matching teacher,
distillation into the sparse-causal student, and evaluation."""
