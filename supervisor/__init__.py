"""agent-supervisor: see where CubeLoop agent threads died, and resume them safely."""

__version__ = "0.1.0"
