"""The JupyterLab extension's Python side (not implemented yet)."""
