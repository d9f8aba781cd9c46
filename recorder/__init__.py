"""Order-book recorder: venues -> book -> sampler -> ring -> writer -> sinks, supervisor over them."""

__version__ = "0.1.0"
