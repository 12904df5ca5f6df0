"""Framework-free OneRoster client: settings, auth, paging, retries, provider profiles, normalisation, CSV."""
