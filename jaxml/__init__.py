"""jaxml: classic neural-network and kernel-method experiments as small pure JAX functions."""

__version__ = "0.1.0"
