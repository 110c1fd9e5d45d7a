"""Training: the loop, its checkpoints, the probe fit, cross-validation, SWA and BN recalibration; ``train`` ties them."""
