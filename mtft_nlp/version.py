"""The package version (a leaf module: records and reports import it without the package's other names)."""

__version__ = "0.1.0"
