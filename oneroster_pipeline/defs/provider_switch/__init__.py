"""Changing provider: the crosswalk, applying the switch, and the per-connection rebuild.
"""
