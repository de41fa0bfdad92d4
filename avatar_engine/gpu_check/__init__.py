"""One prepared check of the engine on a GPU (`bin/gpu-check OUT`).

The large presets with random weights, the VAE decoders, the attention backends, CUDA graphs
and torch.compile, and the suite's gpu-marked tests, each in its own process and against a
matmul ceiling of the same run, within a time budget; a JSON report and a log in OUT. It needs
torch and safetensors alone (the GPU machine's own python), and `--device cpu` is its dry run.
"""
