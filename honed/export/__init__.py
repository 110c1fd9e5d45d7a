"""Finalization: batch-norm fusion, TorchScript / ONNX export with parity checks, and bundles (weights as
safetensors + preprocessing + labels + model card) that load without executing anything from disk."""
