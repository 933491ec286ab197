"""An iterative, caching DNS resolver with a sans-I/O engine."""

__version__ = "0.1.0"
