"""The ``privbox`` command line."""
