"""Plots people would rather look at than read (matplotlib, no display needed)."""
