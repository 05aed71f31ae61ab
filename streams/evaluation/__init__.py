"""Offline evaluations of the online models on real data, and their reports."""
