"""Which PostgreSQL the service runs against: the embedded server, provisioning, replicas made for tests."""
