"""Setting up a district: the connection test (asset `provider_connection_test`, job `test_connection`)."""
