"""Identity, face and SMS verification: provider protocol, adapters, resilience, simulator."""
