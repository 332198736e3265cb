"""Cogumi."""
