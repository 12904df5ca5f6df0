"""The DuckLake warehouse's own jobs: maintenance (flush, merge, expire, clean up) and its weekly schedule."""
