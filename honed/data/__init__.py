"""Data: sources -> Manifest -> decoding -> datasets and loaders."""
