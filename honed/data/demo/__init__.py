"""The demo data shipped with honed."""

from pathlib import Path


def demo_data_path() -> Path:
    """``cifar10-mini``: 600 training and 200 test images of CIFAR-10 in ImageFolder layout."""
    return Path(__file__).parent / "cifar10-mini"
