"""railwatch: a production-monitoring agent for Rails apps."""
__version__ = "0.1.0"
