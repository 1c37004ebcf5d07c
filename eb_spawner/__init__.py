"""A JupyterHub spawner that consults Execution Brokers (not implemented yet)."""
