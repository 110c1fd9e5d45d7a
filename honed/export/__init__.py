"""Export a trained model for inference: fold BatchNorm into convolutions, write TorchScript and ONNX
files atomically, and prove each export computes what the eval-mode original computes (parity reports).
"""
