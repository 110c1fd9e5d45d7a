"""Models: backbones by name (timm or torchvision), their pretrained weights, heads and transfer strategies."""
