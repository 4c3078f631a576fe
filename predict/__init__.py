"""Forecasts of road wear, debris piles and manhole faults (built by the predict issue)."""
