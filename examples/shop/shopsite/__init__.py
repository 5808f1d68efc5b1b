"""Example Django project used by the dbsnap demo and test suite."""
