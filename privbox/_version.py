"""Single source of the privbox version."""

__version__ = "0.1.0"
