"""Loaders of the real data sets shipped inside installed packages (nothing is copied into
the repository)."""
