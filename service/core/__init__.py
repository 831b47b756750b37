"""Settings, errors, logging and metrics shared by the service modules."""
