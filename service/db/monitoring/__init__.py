"""What the database reports: gauges and slow queries."""
