"""Search, evaluate and compare architectures of ``ser_space`` on speech emotion corpora."""

__version__ = "0.1.0"
