"""cor2vox-bids: cortex-grounded synthesis of T1-weighted MRI from cortical surfaces (a BIDS App)."""

__version__ = "0.1.0"
__all__ = ["__version__"]
