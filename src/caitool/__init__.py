"""caitool: Constitutional AI as composable Unix commands."""

__version__ = "0.1.0"
