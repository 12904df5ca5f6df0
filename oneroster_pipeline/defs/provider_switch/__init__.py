"""Changing provider: the crosswalk, applying the switch, the connection guard and the per-connection rebuild."""
