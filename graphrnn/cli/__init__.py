"""The ``graphrnn`` command line."""
