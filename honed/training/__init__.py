"""Training: the loop, its schedule and optimizer, checkpoints, devices, and ``train`` that ties them."""
