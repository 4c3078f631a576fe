"""Folium maps for crews and planners (built by the maps issue)."""
