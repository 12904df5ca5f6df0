"""Building sync and student sync: assets, checks, jobs and the daily schedule."""
